"""How long a trial (and a model load) takes, calibrated on trials already measured: the plan's
device-hours and the jobs' runtime requests (infpop/cluster/sizing.py) come from it where its data
covers the hardware and engine.

A trial's seconds per prompt, per (hardware, engine), is log-linear in what the data varies:

    ln(seconds per prompt) = b0 + b1 ln(params) + b2 log2(n_gpus) + b3 log2(batch) + b4 log2(batch)^2
                             + b5 ln(max_new_tokens) + b6 max(0, ln(params / n_gpus / w))

the last term the weights that do not fit on the GPUs (HF's device_map offloads them to the host,
the paper's slowest trials by far), its threshold w (billions of parameters per GPU) the one of a
few that fits best. A feature the data does not vary (one GPU count, one max_new_tokens) is left
out; the parameter count needs every model's params_billion. Least squares on the finished trials,
then each model's mean residual (its own factor, for the models the data has) and Duan's smearing
factor (the mean of exp(residual)), so that the estimate is of the mean time, not the median.

Extrapolation: a model the data has not seen is placed by its parameter count (its config's
params_billion; without one, no estimate); the GPU count, batch size, max_new_tokens and the
parameter count are clamped to the ranges the data spans (a quadratic in log2(batch) must not run
off beyond them). Hardware or an engine the data lacks gets no estimate: sizing then uses the
config's runtime_estimate, or its fallbacks. A load, likewise, where the data has load times
(our records do, the paper's trials do not): the median of each model's loads, else by parameters.

The data: the paper's published trials (`calibration: paper`; fitted once by `python -m
tools.cost_model` into paper_cost_model.json beside this file, a test refits it from the appendix),
or an earlier run's trials.csv, fitted when the workflow is planned.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

PAPER_MODEL = Path(__file__).with_name("paper_cost_model.json")
#: Thresholds tried for the offload term: billions of parameters per GPU (fp16: 2 GB each).
OFFLOAD_THRESHOLDS = (2, 3, 4, 6, 8, 12, 16, 24, 32)
#: The fewest finished trials a (hardware, engine) needs for a fit.
MIN_TRIALS = 8


def _features(params, gpus, batch, tokens, hinge, per_gpu=None) -> dict[str, np.ndarray]:
    """The features of trials; `per_gpu` (billions of parameters per GPU) where it is not
    params / gpus (a prediction clamps it to the data's range)."""
    params, gpus = np.asarray(params, float), np.asarray(gpus, float)
    batch, tokens = np.asarray(batch, float), np.asarray(tokens, float)
    per_gpu = params / gpus if per_gpu is None else np.asarray(per_gpu, float)
    return {
        "intercept": np.ones_like(batch),
        "log_params": np.log(params),
        "log2_gpus": np.log2(gpus),
        "log2_batch": np.log2(batch),
        "log2_batch_sq": np.log2(batch) ** 2,
        "log_tokens": np.log(tokens),
        "offload": np.maximum(0.0, np.log(per_gpu / hinge)) if hinge else np.zeros_like(batch),
    }


@dataclass
class Fit:
    """One (hardware, engine): the coefficients of its features and what they were fitted on."""

    hardware: str
    engine: str
    features: list[str]
    coefficients: list[float]
    offload_threshold: float | None  # billions of parameters per GPU; None: no offload term
    smearing: float  # mean exp(residual) after the models' own factors: a model the data has
    smearing_new_model: float  # the same without them: a model it has not
    model_offsets: dict[str, float]  # each model's mean residual (ln)
    model_params: dict[str, float | None]
    ranges: dict[str, list[float]]  # params, n_gpus, batch_size, max_new_tokens: [low, high]
    n_trials: int
    rmse_log: float  # of the residuals after the models' own factors
    load_seconds: dict[str, float] = field(default_factory=dict)  # each model's median load
    load_fit: list[float] | None = None  # ln(load s) = a + b ln(params); or [ln(median)] alone

    def __post_init__(self):
        self._estimates: dict[tuple, float | None] = {}  # a plan asks for each trial several times

    def seconds_per_prompt(self, model: str, params, n_gpus: int, batch_size: int, tokens: int) -> float | None:
        """The mean seconds per prompt of one trial (None when the model cannot be placed)."""
        key = (model, params, n_gpus, batch_size, tokens)
        if key not in self._estimates:
            self._estimates[key] = self._estimate(*key)
        return self._estimates[key]

    def _estimate(self, model: str, params, n_gpus: int, batch_size: int, tokens: int) -> float | None:
        known = model in self.model_offsets
        params = self.model_params.get(model) if known and self.model_params.get(model) else params
        if "log_params" in self.features and not params:
            return None

        def clamp(value, name):
            low, high = self.ranges[name]
            return min(max(float(value), low), high)

        values = _features(
            clamp(params, "params") if params else 1.0,
            clamp(n_gpus, "n_gpus"),
            clamp(batch_size, "batch_size"),
            clamp(tokens, "max_new_tokens"),
            self.offload_threshold,
            clamp(params / n_gpus, "params_per_gpu") if params else 1.0,
        )
        log_seconds = sum(c * float(values[f]) for f, c in zip(self.features, self.coefficients, strict=True))
        if known:
            return math.exp(log_seconds + self.model_offsets[model]) * self.smearing
        return math.exp(log_seconds) * self.smearing_new_model

    def load(self, model: str, params) -> float | None:
        if model in self.load_seconds:
            return self.load_seconds[model]
        if not self.load_fit:
            return None
        if len(self.load_fit) == 1:
            return math.exp(self.load_fit[0])
        return math.exp(self.load_fit[0] + self.load_fit[1] * math.log(params)) if params else None


@dataclass
class CostModel:
    """The fits of one calibration, by (hardware, engine)."""

    source: str
    fits: list[Fit]

    def fit(self, hardware: str, gpu_model: str | None, engine: str) -> Fit | None:
        """The fit of a hardware (by its label, else by its GPU model) and engine, if any."""
        for name in (hardware, gpu_model):
            for fit in self.fits:
                if name and fit.hardware == name and fit.engine == engine:
                    return fit
        return None

    def covers(self) -> list[str]:
        return [f"{fit.hardware}/{fit.engine}" for fit in self.fits]

    def to_json(self) -> str:
        """The fits as JSON, every number to 6 significant digits (far below the model's error)."""

        def rounded(value):
            if isinstance(value, float):
                return float(f"{value:.6g}")
            if isinstance(value, dict):
                return {k: rounded(v) for k, v in value.items()}
            if isinstance(value, list):
                return [rounded(v) for v in value]
            return value

        return json.dumps(rounded({"source": self.source, "fits": [asdict(f) for f in self.fits]}), indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str) -> CostModel:
        data = json.loads(text)
        return cls(data["source"], [Fit(**fit) for fit in data["fits"]])


def _least_squares(columns: dict[str, np.ndarray], names: list[str], y: np.ndarray):
    design = np.column_stack([columns[n] for n in names])
    coefficients, *_ = np.linalg.lstsq(design, y, rcond=None)
    residuals = y - design @ coefficients
    return coefficients, residuals


def _fit_one(hardware: str, engine: str, rows: pd.DataFrame, loads: pd.DataFrame) -> Fit:
    y = np.log(rows["seconds_per_prompt"].to_numpy(float))
    params = rows["params"].to_numpy(float)
    with_params = bool(np.isfinite(params).all() and len(np.unique(params)) > 1)
    names = ["intercept"]
    if with_params:
        names.append("log_params")
    for name, column, distinct in (
        ("log2_gpus", "n_gpus", 2),
        ("log2_batch", "batch_size", 2),
        ("log2_batch_sq", "batch_size", 3),
        ("log_tokens", "max_new_tokens", 2),
    ):
        if rows[column].nunique() >= distinct:
            names.append(name)
    best = None
    for threshold in (None, *(OFFLOAD_THRESHOLDS if with_params and "log2_gpus" in names else ())):
        columns = _features(
            params if with_params else 1.0, rows["n_gpus"], rows["batch_size"], rows["max_new_tokens"], threshold
        )
        chosen = names + (["offload"] if threshold else [])
        if threshold and not columns["offload"].any():
            continue
        coefficients, residuals = _least_squares(columns, chosen, y)
        if best is None or (residuals**2).sum() < best[0] - 1e-9:
            best = ((residuals**2).sum(), threshold, chosen, coefficients, residuals)
    _, threshold, chosen, coefficients, residuals = best
    per_gpu = params / rows["n_gpus"].to_numpy(float)
    models = rows["model"].to_numpy()
    offsets = {m: float(residuals[models == m].mean()) for m in sorted(set(models))}
    within = residuals - np.array([offsets[m] for m in models])
    model_params = {
        m: (float(p) if np.isfinite(p) else None) for m, p in rows.groupby("model")["params"].first().items()
    }
    fit = Fit(
        hardware=hardware,
        engine=engine,
        features=chosen,
        coefficients=[float(c) for c in coefficients],
        offload_threshold=float(threshold) if threshold else None,
        smearing=float(np.exp(within).mean()),
        smearing_new_model=float(np.exp(residuals).mean()),
        model_offsets=offsets,
        model_params=model_params,
        ranges={
            "params": [float(np.nanmin(params)), float(np.nanmax(params))] if with_params else [1.0, 1.0],
            "params_per_gpu": [float(np.nanmin(per_gpu)), float(np.nanmax(per_gpu))] if with_params else [1.0, 1.0],
            **{c: [float(rows[c].min()), float(rows[c].max())] for c in ("n_gpus", "batch_size", "max_new_tokens")},
        },
        n_trials=len(rows),
        rmse_log=float(np.sqrt((within**2).mean())),
    )
    if len(loads):
        fit.load_seconds = {m: float(s) for m, s in loads.groupby("model")["load_seconds"].median().items()}
        per_model = loads.groupby("model").agg(seconds=("load_seconds", "median"), params=("params", "first"))
        if per_model["params"].notna().all() and per_model["params"].nunique() > 1:
            coefficients, _ = _least_squares(
                {"a": np.ones(len(per_model)), "b": np.log(per_model["params"].to_numpy(float))},
                ["a", "b"],
                np.log(per_model["seconds"].to_numpy(float)),
            )
            fit.load_fit = [float(c) for c in coefficients]
        else:
            fit.load_fit = [float(np.log(per_model["seconds"].median()))]
    return fit


def calibrate(trials: pd.DataFrame, params: dict[str, float | None], source: str, cpu_hardware=()) -> CostModel:
    """Fit the cost model on a tidy trials table's finished trials with a cost (device_seconds
    and prompts): one fit per (hardware, engine) with at least MIN_TRIALS of them. `params`: each
    model's params_billion (None where unknown); on `cpu_hardware` a trial holds one device."""
    needed = {"hardware", "engine", "model", "n_gpus", "batch_size", "max_new_tokens", "status", "device_seconds"}
    missing = sorted(needed - set(trials.columns) | ({"prompts"} - set(trials.columns)))
    if missing:
        raise ValueError(f"{source}: not a trials table with costs (it lacks {', '.join(missing)})")
    rows = trials[(trials["status"] == "ok") & (pd.to_numeric(trials["device_seconds"], errors="coerce") > 0)].copy()
    rows = rows[pd.to_numeric(rows["prompts"], errors="coerce") > 0]
    devices = np.where(rows["hardware"].isin(list(cpu_hardware)), 1, rows["n_gpus"])
    rows["seconds_per_prompt"] = rows["device_seconds"].astype(float) / devices / rows["prompts"].astype(float)
    rows["params"] = rows["model"].map(lambda m: params.get(m)).astype(float)
    loads = trials.dropna(subset=["load_seconds"]) if "load_seconds" in trials else trials.iloc[0:0]
    loads = loads.drop_duplicates(["hardware", "engine", "model", "n_gpus", "load_seconds"]).copy()
    loads["params"] = loads["model"].map(lambda m: params.get(m)).astype(float)
    fits = []
    for (hardware, engine), group in rows.groupby(["hardware", "engine"], sort=True):
        if len(group) >= MIN_TRIALS:
            mine = loads[(loads["hardware"] == hardware) & (loads["engine"] == engine)]
            fits.append(_fit_one(hardware, engine, group, mine))
    return CostModel(source, fits)


@lru_cache(maxsize=1)
def paper() -> CostModel:
    return CostModel.from_json(PAPER_MODEL.read_text())


@lru_cache(maxsize=8)
def _fitted(path: str, params: tuple, cpu_hardware: tuple) -> CostModel:
    return calibrate(pd.read_csv(path), dict(params), f"the trials of {path}", cpu_hardware)


def for_config(config: dict) -> CostModel | None:
    """The cost model of a config's runtime_estimate.calibration (None: none)."""
    source = config["runtime_estimate"].get("calibration")
    if not source:
        return None
    if source == "paper":
        return paper()
    params = tuple(sorted((m, spec.get("params_billion")) for m, spec in config["models"].items()))
    cpu = tuple(sorted(name for name, spec in config["hardware"].items() if spec["kind"] == "cpu"))
    return _fitted(str(source), params, cpu)
