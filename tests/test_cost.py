"""Cost as an output: a dataset's device-hours per hardware, engine and model (cost.csv), and the
cost model the plan's estimates come from, calibrated on the paper's trials or an earlier run's."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO, SHARED_DATA, needs_shared

from infpop.analysis.cost import COLUMNS, cost_markdown, cost_png, cost_summary, cost_table
from infpop.cluster import cost_model, sizing
from infpop.config import ConfigError
from infpop.measure.grid import Sweep

APPENDIX = SHARED_DATA / "infpop-appendix"

# --------------------------------------------------------------------------- cost.csv


def records(rows) -> pd.DataFrame:
    columns = ["hardware", "engine", "model", "n_gpus", "status", "device_seconds", "load_seconds"]
    return pd.DataFrame(rows, columns=columns)


def test_a_datasets_cost_per_hardware_engine_and_model():
    """Trials by their device_seconds (none: not counted, but listed); each load once, times its
    sweep's devices (a CPU sweep holds one whatever its ranks)."""
    table = cost_table(
        records(
            [
                ("gpu", "vllm", "m", 4, "ok", 3600.0, 90.0),
                ("gpu", "vllm", "m", 4, "ok", 7200.0, 90.0),  # the same worker: the same load
                ("gpu", "vllm", "m", 4, "oom", 360.0, 100.0),  # a new worker after the OOM
                ("gpu", "vllm", "m", 2, "crashed", None, None),
                ("cpu", "vllm", "m", 2, "ok", 1800.0, 36.0),
                ("cpu", "hf", "m", 1, "ok", None, 18.0),  # recorded before costs were
            ]
        ),
        cpu_hardware=["cpu"],
    ).set_index(["hardware", "engine", "model"])
    assert list(table.reset_index().columns) == COLUMNS
    gpu = table.loc[("gpu", "vllm", "m")]
    assert (gpu["trials"], gpu["trials_costed"], gpu["loads"]) == (4, 3, 2)
    assert gpu["trial_device_hours"] == pytest.approx(3.1)
    assert gpu["load_device_hours"] == pytest.approx((90 + 100) * 4 / 3600)
    assert gpu["device_hours"] == pytest.approx(3.1 + 190 * 4 / 3600)
    cpu = table.loc[("cpu", "vllm", "m")]
    assert cpu["load_device_hours"] == pytest.approx(36 / 3600) and cpu["trial_device_hours"] == 0.5
    assert table.loc[("cpu", "hf", "m"), "trials_costed"] == 0
    summary = cost_summary(table.reset_index()).set_index(["hardware", "engine"])
    assert summary.loc[("all", "all"), "device_hours"] == pytest.approx(table["device_hours"].sum())
    assert summary.loc[("all", "all"), "trials"] == 6


def test_markdown_and_figure(tmp_path):
    table = cost_table(records([("gpu", "hf", "m", 2, "ok", 7200.0, 60.0)]))
    text = cost_markdown(table, "measured", "From the records.")
    assert "| gpu | hf | 1 | 1 | 2.0 | 1 | 0.0 | 2.0 |" in text and "| gpu | hf | m | 1 | 1 | 2.0 |" in text
    assert cost_png(table, tmp_path / "cost.png", "measured").stat().st_size > 0
    empty = cost_table(records([("gpu", "hf", "m", 2, "oom", None, None)]))
    assert cost_png(empty, tmp_path / "none.png", "measured").exists()


@needs_shared(APPENDIX / "allData.csv")
def test_the_papers_cost_from_its_published_throughput():
    """DESIGN.md's arithmetic: about 10,300 GPU-hours, HF on V100 7,156, HF on A100 2,827, vLLM 293."""
    from infpop.data.paper import import_paper

    table = cost_table(import_paper(APPENDIX))
    summary = cost_summary(table).set_index(["hardware", "engine"])["device_hours"]
    assert round(summary["v100", "hf"]) == 7156 and round(summary["a100", "hf"]) == 2827
    assert summary["a100", "vllm"] + summary["v100", "vllm"] == pytest.approx(293, abs=1)
    assert round(summary["all", "all"], -2) == 10_300
    assert table["trials_costed"].sum() == 6614 and table["loads"].sum() == 0  # loads were not published


# --------------------------------------------------------------------------- the cost model

PARAMS = {"a": 1.0, "b": 4.0, "c": 16.0, "d": 64.0}


def law(params, gpus, batch, tokens) -> float:
    """Seconds per prompt of a synthetic engine: log-linear in every feature."""
    return 0.05 * params**0.5 * gpus**-0.3 * batch**-0.6 * tokens**0.8


def measured(models=("a", "b", "c"), hardware="h", cpu=False) -> pd.DataFrame:
    rows = []
    for model, gpus, batch, tokens in itertools.product(models, (1, 2, 4), (1, 4, 16, 64), (5, 20)):
        per_prompt = law(PARAMS[model], gpus, batch, tokens)
        devices = 1 if cpu else gpus
        rows.append(
            (hardware, "vllm", model, gpus, batch, tokens, "ok", 100, per_prompt * 100 * devices, 10 * PARAMS[model])
        )
    rows.append((hardware, "vllm", "a", 8, 128, 5, "oom", 100, None, 10.0))  # no cost: left out
    columns = ["hardware", "engine", "model", "n_gpus", "batch_size", "max_new_tokens", "status", "prompts"]
    return pd.DataFrame(rows, columns=[*columns, "device_seconds", "load_seconds"])


def test_calibration_recovers_a_log_linear_law_and_places_new_models_by_their_size():
    model = cost_model.calibrate(measured(), PARAMS, "synthetic")
    fit = model.fit("h", None, "vllm")
    assert model.fit("h", None, "hf") is None and model.fit("x", "h", "vllm") is fit  # by label, else gpu_model
    assert fit.rmse_log == pytest.approx(0, abs=1e-9) and fit.smearing == pytest.approx(1)
    for name, g, b, t in (("a", 2, 16, 5), ("c", 4, 1, 20), ("b", 3, 8, 10)):
        assert fit.seconds_per_prompt(name, PARAMS[name], g, b, t) == pytest.approx(law(PARAMS[name], g, b, t))
    # a model it has not seen, by its parameter count (within the data's range); none: no estimate
    assert fit.seconds_per_prompt("new", 8.0, 2, 16, 5) == pytest.approx(law(8.0, 2, 16, 5))
    assert fit.seconds_per_prompt("new", None, 2, 16, 5) is None
    # outside the data's ranges it does not extrapolate: clamped to the nearest edge
    assert fit.seconds_per_prompt("a", 1.0, 2, 4096, 5) == pytest.approx(law(1.0, 2, 64, 5))
    assert fit.seconds_per_prompt("new", 64.0, 1, 1, 5) == pytest.approx(law(16.0, 1, 1, 5))
    # loads: each model's median; a new one from a log-linear fit on the models' sizes
    assert fit.load("b", 4.0) == pytest.approx(40) and fit.load("new", 8.0) == pytest.approx(80)
    back = cost_model.CostModel.from_json(model.to_json())
    assert back.fit("h", None, "vllm").seconds_per_prompt("b", 4.0, 2, 4, 20) == pytest.approx(
        fit.seconds_per_prompt("b", 4.0, 2, 4, 20), rel=1e-5
    )


def test_a_model_of_its_own_speed_keeps_its_factor():
    """A model the law does not fit (here 3x slower than its size says) keeps its own factor; a new
    model of the same size does not get it."""
    data = measured(models=("a", "b", "c", "d"))
    slow = data["model"] == "d"
    data.loc[slow, "device_seconds"] *= 3
    fit = cost_model.calibrate(data, PARAMS, "synthetic").fit("h", None, "vllm")
    known = fit.seconds_per_prompt("d", 64.0, 2, 16, 5)
    assert known == pytest.approx(3 * law(64.0, 2, 16, 5), rel=0.05)
    assert fit.seconds_per_prompt("new", 64.0, 2, 16, 5) < known


def test_calibration_needs_a_table_with_costs_and_enough_trials():
    with pytest.raises(ValueError, match="lacks device_seconds, prompts"):
        cost_model.calibrate(measured().drop(columns=["device_seconds", "prompts"]), PARAMS, "x.csv")
    few = cost_model.calibrate(measured().head(cost_model.MIN_TRIALS - 1), PARAMS, "few")
    assert few.fits == []
    # on a CPU a trial holds one device: its wall time is its device time
    cpu = cost_model.calibrate(measured(cpu=True), PARAMS, "cpu", cpu_hardware=["h"]).fit("h", None, "vllm")
    assert cpu.seconds_per_prompt("a", 1.0, 4, 16, 5) == pytest.approx(law(1.0, 4, 16, 5))


def test_an_earlier_runs_trials_calibrate_the_plan(tmp_path, config_for):
    """runtime_estimate.calibration names an earlier run's trials.csv: the trials of its hardware
    and engines are estimated from it where the config's figures are unset, the rest as before."""
    earlier = measured(models=("a",), hardware="cpu", cpu=True).replace({"model": {"a": "tiny"}})
    path = tmp_path / "trials.csv"
    earlier.to_csv(path, index=False)
    unset = {"load_s": None, "trial_s": None}
    config = config_for(engines=["hf", "vllm"], runtime_estimate={"calibration": str(path), "vllm": unset, "hf": unset})
    assert config["runtime_estimate"]["calibration"] == str(path)
    assert (
        sizing.source(config, "cpu", "vllm") == sizing.MODELLED and sizing.source(config, "cpu", "hf") == sizing.GUESSED
    )
    # one model, no parameter count: its own factor; max_new_tokens 3 is below the data's 5 to 20
    per_prompt = law(PARAMS["a"], 1, 4, 5)
    assert sizing.trial_seconds(config, "cpu", "vllm", "tiny", 1, 4, 3) == pytest.approx(
        per_prompt * sizing.prompts(config)
    )
    assert sizing.load_seconds(config, "cpu", "vllm", "tiny") == pytest.approx(10)  # its records' median
    jobs = [sizing.SweepJob(Sweep("cpu", "vllm", "tiny", 1))]
    assert f"(the cost model calibrated on the trials of {path} for cpu/vllm)" in sizing.plan_summary(config, jobs, 0)


@pytest.mark.parametrize(
    "calibration, message",
    [
        ("nowhere/trials.csv", "nowhere/trials.csv does not exist: name an earlier run's"),
        ("BAD", "cannot calibrate the cost model on"),
    ],
)
def test_a_calibration_that_cannot_be_read_stops_the_config(tmp_path, config_for, calibration, message):
    if calibration == "BAD":
        calibration = str(tmp_path / "bad.csv")
        pd.DataFrame({"model": ["x"]}).to_csv(calibration, index=False)
    with pytest.raises(ConfigError, match=f"config key 'runtime_estimate.calibration'.*{message}"):
        config_for(runtime_estimate={"calibration": calibration})


@needs_shared(APPENDIX / "allData.csv")
def test_the_committed_paper_fit_is_the_fit_of_the_papers_trials():
    from tools import cost_model as tool

    assert tool.main([str(APPENDIX), "--check"]) == 0
    fitted = cost_model.CostModel.from_json(tool.fitted(APPENDIX))
    assert fitted.covers() == ["a100/hf", "a100/vllm", "v100/hf", "v100/vllm"]


@needs_shared(APPENDIX / "allData.csv")
def test_the_paper_fit_estimates_the_papers_finished_trials():
    """The committed fit, on the 6,614 trials it was fitted on: each (hardware, engine)'s GPU-hours
    within 10% of the published throughputs' (bench/cost_model.py prints this, with each model
    held out)."""
    from infpop.data.paper import PAPER_PROMPTS, import_paper

    trials = import_paper(APPENDIX)
    finished = trials[trials["status"] == "ok"]
    params = yaml.safe_load((REPO / "configs" / "paper.yaml").read_text())["models"]
    model = cost_model.CostModel.from_json(cost_model.PAPER_MODEL.read_text())
    estimated = [
        model.fit(r.hardware, r.hardware, r.engine).seconds_per_prompt(
            r.model, params[r.model]["params_billion"], r.n_gpus, r.batch_size, r.max_new_tokens
        )
        * PAPER_PROMPTS
        * r.n_gpus
        for r in finished.itertuples()
    ]
    hours = finished.assign(estimated=estimated).groupby(["hardware", "engine"])[["device_seconds", "estimated"]].sum()
    ratio = hours["estimated"] / hours["device_seconds"]
    assert ratio.between(0.9, 1.1).all(), ratio
    assert hours["estimated"].sum() / hours["device_seconds"].sum() == pytest.approx(1, abs=0.02)
    assert math.isclose(hours["device_seconds"].sum() / 3600, 10_277, abs_tol=1)
    assert np.isfinite(estimated).all()
