"""hf offloading (hf_offload): the placement check, what the record and the figures say, and when
a record is measured again. No GPU here: the check is a function of accelerate's device map, and
the CPU engine, which never counts as offloaded, runs for real in tests/test_sweep.py."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import make_config

from infpop.analysis import plots, rq1, rq3
from infpop.analysis.selection import AnalysisSettings, select
from infpop.config import ConfigError, load_config
from infpop.measure import records
from infpop.measure.engines.hf import is_offloaded, modules_per_device, offload_refusal
from infpop.measure.grid import Sweep

GIB = 2**30


def test_modules_per_device_and_what_counts_as_offloaded():
    device_map = {
        "model.embed_tokens": 0,
        "model.layers.0": 0,
        "model.layers.1": 1,
        "model.layers.2": "cpu",
        "model.layers.3": "disk",
        "lm_head": "cpu",
    }
    per_device = modules_per_device(device_map, "meta")
    assert per_device == {"0": 2, "1": 1, "cpu": 2, "disk": 1}
    assert is_offloaded(per_device, "cuda")
    assert not is_offloaded({"0": 3, "1": 3}, "cuda")
    # on the CPU the host is the device: a model there is never offloaded
    assert modules_per_device(None, "cpu") == {"cpu": 1} and not is_offloaded({"cpu": 1}, "cpu")


def test_a_placement_off_the_gpus_is_refused_naming_the_gpus_memory():
    refusal = offload_refusal({"0": 20, "1": 20, "cpu": 3, "disk": 1}, "cuda", [80 * GIB, 80 * GIB])
    assert refusal.startswith(
        "out of memory: the model does not fit in the GPUs' memory (GPU 0: 80.0 GiB, GPU 1: 80.0 GiB)"
    )
    assert "4 of 44 modules off the GPUs (3 on cpu and 1 on disk)" in refusal and "hf_offload: allow" in refusal
    assert offload_refusal({"0": 44}, "cuda", [80 * GIB]) is None
    assert offload_refusal({"cpu": 1}, "cpu", []) is None


def test_hf_offload_is_validated_and_defaults_to_forbid(tiny_model):
    assert load_config(make_config(tiny_model))["hf_offload"] == "forbid"
    with pytest.raises(ConfigError, match=r"config key 'hf_offload': 'sometimes' is not one of \['allow', 'forbid'\]"):
        load_config(make_config(tiny_model, hf_offload="sometimes"))


def _record(status: str, offloaded: bool | None, ran: bool = True) -> dict:
    return {
        "status": status,
        "timings": {"started_at": "2026-01-01T00:00:00" if ran else None},
        "engine_settings": None if offloaded is None else {"device_map": {"0": 1, "cpu": 1}, "offloaded": offloaded},
    }


def test_a_record_is_measured_again_only_where_the_offload_policy_decided_it(config_for):
    cases = {
        "ran offloaded": _record("ok", True),
        "refused at load": _record("oom", True, ran=False),
        "fitted": _record("ok", False),
        "made before hf_offload": _record("ok", None),
    }
    expected = {"forbid": {"ran offloaded"}, "allow": {"refused at load"}}
    for policy, again in expected.items():
        context = records.SweepContext.from_config(
            config_for(hf_offload=policy), Sweep("cpu", "hf", "tiny", 1), "tiny", None, prompts=8
        )
        assert {name for name, record in cases.items() if records.offload_changed(context, record)} == again


def _captured_labels(monkeypatch):
    """The legend texts of the next figures saved (instead of only their pixels)."""
    labels = []

    def save(fig, path):
        legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
        labels.append([text.get_text() for legend in legends for text in legend.get_texts()])
        rq1.plt.close(fig)
        return path

    monkeypatch.setattr(rq1, "save", save)
    monkeypatch.setattr(rq3, "save", save)
    return labels


def test_offloaded_trials_are_marked_in_the_landscape_and_the_batch_curves(monkeypatch, tmp_path):
    rows = [
        dict(
            hardware="v100",
            engine="hf",
            model="big",
            n_gpus=g,
            batch_size=b,
            max_new_tokens=5,
            rep=0,
            status="ok",
            throughput_tokens_per_s=t,
            offloaded=o,
        )
        for g, b, t, o in [(4, 1, 0.04, True), (4, 2, 0.09, True), (8, 1, 0.2, False), (8, 2, 0.4, False)]
    ]
    df = select(pd.DataFrame(rows), AnalysisSettings())
    labels = _captured_labels(monkeypatch)
    rq1.landscape_png(df, tmp_path / "l.png", "big")
    rq3.batch_curves_png(df, "v100", "hf", 4, tmp_path / "c.png")
    rq3.batch_curves_png(df, "v100", "hf", 8, tmp_path / "c8.png")
    assert plots.OFFLOADED_LABEL in labels[0] and plots.OFFLOADED_LABEL in labels[1]
    assert plots.OFFLOADED_LABEL not in labels[2]  # nothing offloaded at 8 GPUs
    # a table without the column (the paper's data, vLLM): nothing is marked
    rq1.landscape_png(df.drop(columns="offloaded"), tmp_path / "n.png", "big")
    assert plots.OFFLOADED_LABEL not in labels[3]
