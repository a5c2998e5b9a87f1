"""Tests for infpop.data.paper: fetching the paper's appendix and importing its published trials.

The oracle is ../shared/data/paper_trials.csv, allData.csv annotated with the hardware and
max_new_tokens it lost; the importer must reproduce it row for row without reading it."""

from __future__ import annotations

import hashlib
import io
import runpy
import shutil
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from conftest import SHARED_DATA, needs_shared

from infpop import REPO_ROOT
from infpop.data.paper import (
    APPENDIX_COMMIT,
    APPENDIX_FILES,
    APPENDIX_REPO,
    PaperDataError,
    fetch_appendix,
    import_paper,
    write_trials,
)
from infpop.trials import TIDY_COLUMNS

APPENDIX = SHARED_DATA / "infpop-appendix"
ORACLE = SHARED_DATA / "paper_trials.csv"

pytestmark = needs_shared(APPENDIX / "allData.csv", ORACLE)

STATUS = {"ok": "ok", "CUDA out of memory": "oom", "CUDA error": "error", "killed-noInfo": "crashed"}


@pytest.fixture(scope="module")
def imported() -> pd.DataFrame:
    return import_paper(APPENDIX)


@pytest.fixture(scope="module")
def oracle() -> pd.DataFrame:
    return pd.read_csv(ORACLE)


def _copy_appendix(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for name in APPENDIX_FILES:
        shutil.copyfile(APPENDIX / name, dest / name)
    return dest


# --------------------------------------------------------------------------- import


def test_import_reproduces_the_oracle_row_for_row(imported, oracle):
    assert list(imported.columns) == TIDY_COLUMNS
    assert len(imported) == len(oracle) == 8847
    assert imported["hardware"].tolist() == oracle["hardware"].tolist()
    assert imported["max_new_tokens"].tolist() == oracle["max_new_tokens"].tolist()
    assert imported["model"].tolist() == oracle["model"].tolist()
    assert imported["engine"].tolist() == oracle["engine"].map({"autohf": "hf", "vLLM": "vllm"}).tolist()
    assert imported["n_gpus"].tolist() == oracle["n_gpus"].tolist()
    assert imported["batch_size"].tolist() == oracle["batch_size"].tolist()
    assert imported["status"].tolist() == oracle["status"].map(STATUS).tolist()
    pd.testing.assert_series_equal(
        imported["throughput_tokens_per_s"], oracle["throughput"], check_names=False, rtol=0, atol=0
    )


def test_import_fills_error_rep_and_leaves_the_rest_empty(imported, oracle):
    failed = imported["status"] != "ok"
    assert imported.loc[failed, "error"].tolist() == oracle.loc[failed, "status"].tolist()
    assert imported.loc[~failed, "error"].isna().all()
    # Partial throughput of trials that ran out of memory part-way is kept, as the paper did.
    assert imported.loc[imported["status"] == "oom", "throughput_tokens_per_s"].notna().any()
    identity = ["hardware", "engine", "model", "n_gpus", "max_new_tokens", "batch_size"]
    assert not imported.duplicated(identity + ["rep"]).any()
    repeated = imported[imported["rep"] > 0]
    # Only Codellama-34b-hf/hf's split A100 sweep measured a configuration twice (2 GPUs).
    assert set(map(tuple, repeated[["model", "engine", "hardware", "n_gpus"]].drop_duplicates().values)) == {
        ("Codellama-34b-hf", "hf", "a100", 2)
    }
    assert (repeated["rep"] == 1).all()
    filled = set(identity) | {"rep", "status", "throughput_tokens_per_s", "error", "prompts", "device_seconds"}
    for column in set(TIDY_COLUMNS) - filled:
        assert imported[column].isna().all(), column
    assert (imported["prompts"] == 1033).all()


def test_the_cost_of_each_finished_trial_is_its_published_throughputs(imported):
    """1,033 prompts x max_new_tokens / throughput x n_gpus GPU-seconds per finished trial: the
    paper's trials took about 10,300 GPU-hours (HF on V100 7,156; HF on A100 2,827; vLLM 293,
    /work/shared/DESIGN.md's arithmetic). Failed trials' time is not published: no cost."""
    ok = imported["status"] == "ok"
    assert imported.loc[ok, "device_seconds"].notna().all() and imported.loc[~ok, "device_seconds"].isna().all()
    first = imported[ok].iloc[0]
    assert first["device_seconds"] == pytest.approx(
        1033 * first["max_new_tokens"] / first["throughput_tokens_per_s"] * first["n_gpus"]
    )
    hours = imported.groupby(["hardware", "engine"])["device_seconds"].sum() / 3600
    assert round(hours["v100", "hf"]) == 7156 and round(hours["a100", "hf"]) == 2827
    assert hours["a100", "vllm"] + hours["v100", "vllm"] == pytest.approx(293, abs=1)  # 111 + 182
    assert round(hours.sum(), -2) == 10_300


def test_write_trials_round_trips(imported, tmp_path):
    path = tmp_path / "paper" / "trials.csv"
    write_trials(imported, path)
    back = pd.read_csv(path)
    assert list(back.columns) == TIDY_COLUMNS
    assert len(back) == len(imported)
    assert back["hardware"].tolist() == imported["hardware"].tolist()
    assert back["rep"].tolist() == imported["rep"].tolist()


def _with_all_data(tmp_path: Path, frame: pd.DataFrame) -> Path:
    folder = _copy_appendix(tmp_path / "appendix")
    frame.to_csv(folder / "allData.csv")
    return folder


def test_more_than_three_rows_per_configuration_raises(tmp_path):
    frame = pd.read_csv(APPENDIX / "allData.csv", index_col=0).iloc[:33]
    frame = pd.concat([frame.iloc[:3], frame.iloc[[2]], frame.iloc[3:]])
    with pytest.raises(PaperDataError, match=r"allData\.csv row 2 \(line 5\).*more than 3"):
        import_paper(_with_all_data(tmp_path, frame))


def test_unmatched_hardware_raises_naming_the_row(tmp_path):
    frame = pd.read_csv(APPENDIX / "allData.csv", index_col=0).iloc[:33].copy()
    frame.iloc[0, frame.columns.get_loc("throughput")] = 99.0
    with pytest.raises(PaperDataError, match=r"allData\.csv row 0 .*cannot tell the hardware.*no"):
        import_paper(_with_all_data(tmp_path, frame))


def test_unknown_status_raises_naming_the_row(tmp_path):
    frame = pd.read_csv(APPENDIX / "allData.csv", index_col=0).iloc[:33].copy()
    frame.iloc[4, frame.columns.get_loc("errors_l")] = "segfault"
    with pytest.raises(PaperDataError, match=r"allData\.csv row 4 .*unknown status 'segfault'"):
        import_paper(_with_all_data(tmp_path, frame))


def test_import_without_the_files_raises(tmp_path):
    with pytest.raises(PaperDataError, match=r"allData\.csv.*paper_data\.local_dir"):
        import_paper(tmp_path)


# --------------------------------------------------------------------------- fetch


def test_checksums_are_those_of_the_shared_files():
    for name, (_, sha) in APPENDIX_FILES.items():
        assert hashlib.sha256((APPENDIX / name).read_bytes()).hexdigest() == sha, name


def test_fetch_from_a_local_dir(tmp_path):
    dest = fetch_appendix(tmp_path / "appendix", local_dir=APPENDIX)
    assert dest == tmp_path / "appendix"
    assert sorted(p.name for p in dest.iterdir()) == sorted(APPENDIX_FILES)
    for name in APPENDIX_FILES:
        assert (dest / name).read_bytes() == (APPENDIX / name).read_bytes()


def test_fetch_rejects_a_corrupted_copy(tmp_path):
    local = _copy_appendix(tmp_path / "local")
    target = local / "table_gpuscale_tesla_vLLM.csv"
    data = bytearray(target.read_bytes())
    data[20] = ord("X") if data[20] != ord("X") else ord("Y")  # one byte changed
    target.write_bytes(bytes(data))
    with pytest.raises(PaperDataError) as info:
        fetch_appendix(tmp_path / "dest", local_dir=local)
    message = str(info.value)
    assert "table_gpuscale_tesla_vLLM.csv" in message and "sha256" in message
    assert "paper_data.local_dir" in message and "PAPER_DATA_DIR" in message


def test_fetch_from_a_missing_local_dir_says_how_to_fix_it(tmp_path):
    with pytest.raises(PaperDataError) as info:
        fetch_appendix(tmp_path / "dest", local_dir=tmp_path / "nowhere")
    message = str(info.value)
    assert "nowhere" in message
    assert "paper_data.local_dir" in message and "make run PAPER_DATA_DIR=" in message


def test_fetch_names_a_file_missing_from_the_local_dir(tmp_path):
    local = _copy_appendix(tmp_path / "local")
    (local / "allData.csv").unlink()
    with pytest.raises(PaperDataError, match=r"allData\.csv.*paper_data\.local_dir"):
        fetch_appendix(tmp_path / "dest", local_dir=local)


class _FakeResponse(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def test_fetch_downloads_from_the_pinned_commit(tmp_path, monkeypatch):
    """The fake URL opener isolates the network: it serves the shared files by URL, so this
    checks the URLs, the timeout and the checksum step without any download."""
    by_url = {
        f"https://raw.githubusercontent.com/{APPENDIX_REPO}/{APPENDIX_COMMIT}/{path}": name
        for name, (path, _) in APPENDIX_FILES.items()
    }
    assert (
        "https://raw.githubusercontent.com/UPCBarcelonaTech/infpop/"
        "1b4908c994fabf89a50b825f5ffdafedf807c890/RQ1/table_gpuscale_a100_vLLM.csv" in by_url
    )
    calls = []

    def fake_urlopen(url, timeout=None):
        calls.append((url, timeout))
        return _FakeResponse((APPENDIX / by_url[url]).read_bytes())

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    dest = fetch_appendix(tmp_path / "dest")
    assert sorted(url for url, _ in calls) == sorted(by_url)
    assert {timeout for _, timeout in calls} == {60}
    for name in APPENDIX_FILES:
        assert (dest / name).read_bytes() == (APPENDIX / name).read_bytes()


def test_fetch_reports_a_failed_or_wrong_download(tmp_path, monkeypatch):
    """The fake URL opener isolates the network: it fails, or serves the wrong bytes."""

    def unreachable(url, timeout=None):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(urllib.request, "urlopen", unreachable)
    with pytest.raises(PaperDataError) as info:
        fetch_appendix(tmp_path / "dest")
    message = str(info.value)
    assert message.startswith("allData.csv: download from https://raw.githubusercontent.com/")
    assert "paper_data.local_dir" in message and "PAPER_DATA_DIR" in message

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout=None: _FakeResponse(b"404: Not Found"))
    with pytest.raises(PaperDataError, match=r"allData\.csv: sha256 mismatch.*paper_data\.local_dir"):
        fetch_appendix(tmp_path / "dest")


# --------------------------------------------------------------------------- Snakemake entry


def _run_entry(tmp_path: Path, local_dir: str | None):
    snakemake = SimpleNamespace(
        config={"paper_data": {"local_dir": local_dir}},
        output=SimpleNamespace(
            trials=str(tmp_path / "paper" / "trials.csv"), appendix=str(tmp_path / "paper" / "appendix")
        ),
        log=[str(tmp_path / "import_paper.log")],
    )
    runpy.run_path(
        str(REPO_ROOT / "workflow" / "scripts" / "import_paper.py"),
        init_globals={"snakemake": snakemake},
        run_name="__main__",
    )
    return snakemake


def test_entry_script_writes_the_trials(tmp_path):
    snakemake = _run_entry(tmp_path, str(APPENDIX))
    trials = pd.read_csv(snakemake.output.trials)
    assert len(trials) == 8847 and list(trials.columns) == TIDY_COLUMNS
    assert "8847 trials" in Path(snakemake.log[0]).read_text()


def test_entry_script_exits_with_the_message(tmp_path):
    with pytest.raises(SystemExit) as info:
        _run_entry(tmp_path, str(tmp_path / "nowhere"))
    assert str(info.value.code).startswith("import_paper: paper_data.local_dir")
    assert "PAPER_DATA_DIR" in (tmp_path / "import_paper.log").read_text()
