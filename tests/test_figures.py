"""RQ1-RQ3 figures and landscape features (infpop.analysis.rq1, rq2, rq3)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import SHARED_DATA, require_shared

from infpop.analysis import rq1, rq2, rq3
from infpop.analysis.selection import INSUFFICIENT, AnalysisSettings, select

PAPER_TRIALS = SHARED_DATA / "paper_trials.csv"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PAPER_STATUS = {"ok": "ok", "CUDA out of memory": "oom", "CUDA error": "error", "killed-noInfo": "crashed"}


def trials_table(cells, hardware="a100", engine="hf", model="toy") -> pd.DataFrame:
    """A trials table from {(n_gpus, batch_size): throughput | (status, throughput)}."""
    rows = []
    for (n_gpus, batch_size), value in cells.items():
        status, throughput = value if isinstance(value, tuple) else ("ok", value)
        rows.append(
            dict(
                hardware=hardware,
                engine=engine,
                model=model,
                n_gpus=n_gpus,
                batch_size=batch_size,
                max_new_tokens=5,
                rep=0,
                status=status,
                throughput_tokens_per_s=throughput,
            )
        )
    return select(pd.DataFrame(rows), AnalysisSettings())


# rows: batch size 1, 2, 4, 8; columns: n_gpus 1, 2, 4, 8
#          g=1            g=2   g=4             g=8
TOY = {
    (1, 1): 10.0,
    (2, 1): 20.0,
    (4, 1): 30.0,
    (8, 1): 40.0,
    (1, 2): 20.0,
    (2, 2): 100.0,
    (4, 2): 30.0,
    (8, 2): 50.0,  # (2, 2): the global maximum
    (1, 4): 30.0,
    (2, 4): 40.0,
    (4, 4): 35.0,
    (8, 4): 95.0,  # (8, 4): a peak, 5 % below
    (1, 8): ("oom", math.nan),
    (2, 8): 50.0,
    (4, 8): ("error", math.nan),  # (2, 8): peak by failures
    # (8, 8) never run
}


@pytest.fixture
def toy() -> pd.DataFrame:
    return trials_table(TOY)


@pytest.fixture
def all_failed() -> pd.DataFrame:
    return trials_table(
        {
            (1, 1): ("oom", math.nan),
            (1, 2): ("skipped_oom", math.nan),
            (2, 1): ("error", math.nan),
            (2, 2): ("crashed", math.nan),
        },
        model="broken",
    )


@pytest.fixture(scope="module")
def paper() -> pd.DataFrame:
    require_shared(PAPER_TRIALS)
    raw = pd.read_csv(PAPER_TRIALS)
    trials = pd.DataFrame(
        {
            "hardware": raw["hardware"],
            "engine": raw["engine"].map({"autohf": "hf", "vLLM": "vllm"}),
            "model": raw["model"],
            "n_gpus": raw["n_gpus"],
            "batch_size": raw["batch_size"],
            "max_new_tokens": raw["max_new_tokens"],
            "status": raw["status"].map(PAPER_STATUS),
            "throughput_tokens_per_s": raw["throughput"],
        }
    )
    assert trials["engine"].notna().all() and trials["status"].notna().all()
    trials["rep"] = trials.groupby(["hardware", "engine", "model", "n_gpus", "max_new_tokens", "batch_size"]).cumcount()
    return select(trials, AnalysisSettings())


def one(df, hardware, engine, model):
    return df[(df["hardware"] == hardware) & (df["engine"] == engine) & (df["model"] == model)]


def by_kind(features, kind):
    return [f for f in features if f["kind"] == kind]


def assert_png(path: Path):
    assert path.exists() and path.stat().st_size > 1000
    assert path.read_bytes()[:8] == PNG_SIGNATURE


# ----------------------------------------------------------------------------- features


def test_features_find_the_known_peaks_and_plateau(toy):
    features = rq1.landscape_features(toy)
    assert [f["kind"] for f in features] == ["global_max", "peak", "peak", "plateau"]
    peaks = [(f["n_gpus"], f["batch_size"], f["throughput"]) for f in features if f["kind"] != "plateau"]
    assert peaks == [(2, 2, 100.0), (8, 4, 95.0), (2, 8, 50.0)]
    plateau = by_kind(features, "plateau")[0]
    assert plateau["plateau_cells"] == 2
    assert sorted(plateau["cells"]) == [(2, 2), (8, 4)]
    assert plateau["plateau_n_gpus"] == (2, 8)
    assert plateau["plateau_batch_sizes"] == (2, 4)
    assert plateau["threshold"] == pytest.approx(90.0)
    assert all(f["note"] is None for f in features)


def test_plateau_tolerance_is_a_parameter(toy):
    narrow = by_kind(rq1.landscape_features(toy, plateau_tolerance=0.04), "plateau")[0]
    assert narrow["cells"] == [(2, 2)] and narrow["plateau_n_gpus"] == (2, 2)
    wide = by_kind(rq1.landscape_features(toy, plateau_tolerance=0.55), "plateau")[0]
    assert sorted(wide["cells"]) == [(2, 2), (2, 8), (8, 2), (8, 4)]  # >= 45: 100, 50, 50, 95
    with pytest.raises(ValueError):
        rq1.landscape_features(toy, plateau_tolerance=1.5)


def test_a_tie_is_not_a_strict_peak_but_still_the_global_max():
    features = rq1.landscape_features(trials_table({(1, 1): 5.0, (1, 2): 9.0, (2, 2): 9.0, (2, 1): 1.0}))
    assert [(f["kind"], f["n_gpus"], f["batch_size"]) for f in features[:-1]] == [("global_max", 1, 2)]
    assert by_kind(features, "plateau")[0]["plateau_cells"] == 2


def test_all_failed_landscape_is_insufficient_data(all_failed, tmp_path):
    features = rq1.landscape_features(all_failed)
    assert len(features) == 1 and features[0]["note"] == INSUFFICIENT and features[0]["kind"] is None
    png = rq1.landscape_png(all_failed, tmp_path / "broken.png", "broken")
    html = rq1.landscape_html(all_failed, tmp_path / "broken.html", "broken")
    assert_png(png)
    assert "insufficient data" in html.read_text() and "plotly" in html.read_text()


def test_landscape_table_over_several_landscapes(toy, all_failed):
    table = rq1.landscape_table(pd.concat([toy, all_failed], ignore_index=True))
    assert list(table.columns) == rq1.TABLE_COLUMNS
    broken = table[table["model"] == "broken"]
    assert len(broken) == 1 and broken["note"].iloc[0] == INSUFFICIENT
    rows = table[table["model"] == "toy"]
    assert list(rows["kind"]) == ["global_max", "peak", "peak", "plateau"]
    plateau = rows[rows["kind"] == "plateau"].iloc[0]
    assert (plateau["plateau_cells"], plateau["plateau_n_gpus"], plateau["plateau_batch_sizes"]) == (2, "2-8", "2-4")
    assert rows["note"].isna().all()


def test_replicates_enter_a_landscape_as_their_mean_and_two_token_counts_are_refused(toy):
    faster = toy.assign(throughput_tokens_per_s=toy["throughput_tokens_per_s"] * 1.5, rep=1)
    features = rq1.landscape_features(pd.concat([toy.assign(rep=0), faster], ignore_index=True))
    single = rq1.landscape_features(toy)
    assert features[0]["throughput"] == pytest.approx(single[0]["throughput"] * 1.25)  # mean of x and 1.5x
    assert (features[0]["n_gpus"], features[0]["batch_size"]) == (single[0]["n_gpus"], single[0]["batch_size"])
    with pytest.raises(ValueError, match="one configuration per"):
        rq1.landscape_features(pd.concat([toy, toy.assign(max_new_tokens=toy["max_new_tokens"] + 5)]))


def test_cells_give_the_mean_and_its_confidence_interval():
    from scipy import stats

    from infpop.analysis.selection import cells

    rows = pd.DataFrame(
        {
            "hardware": "cpu",
            "engine": "vllm",
            "model": "m",
            "n_gpus": 1,
            "max_new_tokens": 5,
            "batch_size": 64,
            "rep": [0, 1, 2, 3],
            "status": ["ok", "ok", "ok", "error"],
            "throughput_tokens_per_s": [1302.0, 1503.0, 1108.0, None],
            "counted": [True, True, True, False],
        }
    )
    cell = cells(rows).iloc[0]
    low, high = stats.t.interval(0.95, 2, loc=stats.tmean([1302, 1503, 1108]), scale=stats.sem([1302, 1503, 1108]))
    assert cell["throughput_tokens_per_s"] == pytest.approx(1304.333, abs=1e-3) and cell["n_counted"] == 3
    assert (cell["ci_low"], cell["ci_high"]) == (pytest.approx(low, rel=1e-4), pytest.approx(high, rel=1e-4))
    assert cell["status"] == "ok" and bool(cell["counted"])


# ----------------------------------------------------------------------------- files


def test_landscape_files_are_written(toy, tmp_path):
    png = rq1.landscape_png(toy, tmp_path / "out" / "toy.png", "toy landscape")
    assert_png(png)
    first = rq1.landscape_html(toy, tmp_path / "html" / "toy.html", "toy landscape")
    second = rq1.landscape_html(toy, tmp_path / "html" / "toy2.html", "again")
    text = first.read_text()
    assert "plotly" in text and 'src="plotly.min.js"' in text
    assert "status: %{customdata[3]}" in text and '"oom"' in text and '"error"' in text
    bundle = tmp_path / "html" / "plotly.min.js"
    assert bundle.exists() and bundle.stat().st_size > 1_000_000  # one shared copy of plotly.js
    assert first.stat().st_size < 200_000 and second.stat().st_size < 200_000  # the bundle is not inlined


def test_write_landscapes_names_files_per_landscape(toy, all_failed, tmp_path):
    written = rq1.write_landscapes(pd.concat([toy, all_failed], ignore_index=True), tmp_path)
    assert sorted(p.name for p in written) == [
        "a100_hf_broken.html",
        "a100_hf_broken.png",
        "a100_hf_toy.html",
        "a100_hf_toy.png",
    ]
    assert rq1.landscape_stem("a100", "vllm", "org/Model 7b") == "a100_vllm_org_Model_7b"


def test_line_figures(toy, all_failed, tmp_path):
    other = trials_table({(g, b): v * 0.5 for (g, b), v in TOY.items() if not isinstance(v, tuple)}, model="half")
    df = pd.concat([toy, other, all_failed], ignore_index=True)
    assert_png(rq2.gpu_scaling_png(df, "a100", "hf", tmp_path / "rq2.png"))
    assert_png(rq3.batch_curves_png(df, "a100", "hf", 1, tmp_path / "rq3.png"))
    assert_png(rq3.batch_curves_png(df, "a100", "hf", 1, tmp_path / "rq3x.png", exclude=["half"]))
    assert_png(rq2.gpu_scaling_png(df, "v100", "hf", tmp_path / "none.png"))  # no data: a message
    assert_png(rq3.batch_curves_png(all_failed, "a100", "hf", 2, tmp_path / "failed.png"))


# ----------------------------------------------------------------------------- the paper's data


def test_paper_bloom_1b7_hf_a100_has_two_peaks_at_batch_64(paper):
    """Paper, Fig. 1a: two peaks of about 94.5 t/s at batch size 64, with 1 and with 8 GPUs.
    In the data both are trials that ran out of memory part-way (counted, as in the paper)."""
    df = one(paper, "a100", "hf", "Bloom-1b7")
    features = rq1.landscape_features(df)
    top, second = features[0], features[1]
    assert (top["kind"], top["n_gpus"], top["batch_size"]) == ("global_max", 8, 64)
    assert (second["kind"], second["n_gpus"], second["batch_size"]) == ("peak", 1, 64)
    assert top["throughput"] == pytest.approx(94.5, abs=0.1)
    assert second["throughput"] == pytest.approx(94.5, abs=0.2)
    statuses = df.set_index(["n_gpus", "batch_size"])["status"]
    assert statuses[(8, 64)] == "oom" and statuses[(1, 64)] == "oom"
    # the rest of the landscape lies well below (the paper: between 60 and 70 t/s)
    others = [f["throughput"] for f in features[2:] if f["kind"] == "peak"]
    assert others and max(others) < 85
    plateau = by_kind(features, "plateau")[0]
    assert sorted(plateau["cells"]) == [(1, 64), (8, 64)]


def test_paper_landscape_table_and_plateaus(paper):
    table = rq1.landscape_table(paper)
    assert table.groupby(["hardware", "engine", "model"]).ngroups == 79
    assert (table["kind"] == "global_max").sum() == 79 and (table["kind"] == "plateau").sum() == 79
    assert table["note"].isna().all()

    def row(hardware, engine, model, kind):
        rows = table[
            (table["hardware"] == hardware)
            & (table["engine"] == engine)
            & (table["model"] == model)
            & (table["kind"] == kind)
        ]
        return rows.iloc[0]

    # Fig. 1d: Gemma-2b vLLM, a plateau over 4 to 8 GPUs; the maximum at batch size 256 with 8 GPUs
    gemma = row("a100", "vllm", "Gemma-2b", "plateau")
    assert gemma["plateau_n_gpus"] == "4-8" and gemma["plateau_batch_sizes"] == "64-1028"
    assert (row("a100", "vllm", "Gemma-2b", "global_max")[["n_gpus", "batch_size"]] == [8, 256]).all()
    # Fig. 1f: Starcoder-15b HF on V100, a thin plateau bounded by 2 and 8 GPUs, batch sizes 8 and 16
    starcoder = row("v100", "hf", "Starcoder-15b", "plateau")
    assert (starcoder["plateau_n_gpus"], starcoder["plateau_batch_sizes"]) == ("2-8", "8-16")
    # Fig. 1e: Starcoder-15b HF on A100, a peak with one GPU at batch size 32
    assert (row("a100", "hf", "Starcoder-15b", "global_max")[["n_gpus", "batch_size"]] == [1, 32]).all()


def test_paper_figures_render(paper, tmp_path):
    df = one(paper, "a100", "hf", "Bloom-1b7")
    assert_png(rq1.landscape_png(df, tmp_path / "bloom.png", rq1.landscape_title("a100", "hf", "Bloom-1b7")))
    html = rq1.landscape_html(df, tmp_path / "bloom.html", "Bloom-1b7").read_text()
    assert "Bloom-1b7" in html and not np.any([token in html for token in ("NaN", "Infinity")])
    assert_png(rq2.gpu_scaling_png(paper, "a100", "vllm", tmp_path / "rq2.png"))
    assert_png(rq3.batch_curves_png(paper, "a100", "hf", 2, tmp_path / "rq3.png", exclude=["Starcoder2-3b"]))
