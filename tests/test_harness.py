"""The test suite's own rules: an oracle test whose reference data is missing skips on a
developer's machine, and fails under CI."""

from __future__ import annotations

from pathlib import Path

import conftest
import pytest

MISSING = Path("/nonexistent/paper_trials.csv")


def test_missing_reference_data_skips_outside_ci(monkeypatch):
    monkeypatch.setattr(conftest, "UNDER_CI", False)
    with pytest.raises(pytest.skip.Exception, match="reference data missing"):
        conftest.require_shared(MISSING)


def test_missing_reference_data_fails_under_ci(monkeypatch):
    monkeypatch.setattr(conftest, "UNDER_CI", True)
    with pytest.raises(pytest.fail.Exception, match=r"CI=true: reference data missing .*paper_trials\.csv"):
        conftest.require_shared(MISSING)


def test_present_reference_data_passes(tmp_path, monkeypatch):
    monkeypatch.setattr(conftest, "UNDER_CI", True)
    conftest.require_shared(tmp_path)


def test_ci_runs_with_ci_set():
    """.ci/run exports CI=true, whatever the CI machine sets."""
    assert "export CI=true" in (conftest.REPO / ".ci" / "run").read_text()
