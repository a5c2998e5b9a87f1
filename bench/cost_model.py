"""The cost model against the paper's published trials: what it estimates and how far off it is.

Prints, per hardware and engine:
1. the GPU-hours the paper's finished trials took by their published throughput (1,033 prompts x
   max_new_tokens / throughput x n_gpus), DESIGN.md's arithmetic;
2. the cost model's estimate of those same trials (the fit committed in
   infpop/cluster/paper_cost_model.json, which saw them: in-sample);
3. leave one model out: each model's trials estimated by a fit on the other 19 (as the model
   estimates a model it has not seen), per model and in all;
4. the plan of configs/paper.yaml: its 10,560 trials as the cost model estimates them, uncapped and
   at most trial_timeout_s each, and with a load per job (the device-hours the plan prints).

    python bench/cost_model.py [APPENDIX_DIR]     (default ../shared/data/infpop-appendix)
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from infpop.cluster import cost_model, sizing  # noqa: E402
from infpop.cluster.partitions import plan_cluster, read_partitions  # noqa: E402
from infpop.config import load_config  # noqa: E402
from infpop.data.paper import PAPER_PROMPTS, import_paper  # noqa: E402
from infpop.measure.grid import plan  # noqa: E402
from tools.cost_model import DEFAULT_APPENDIX, paper_params  # noqa: E402


def estimate(model: cost_model.CostModel, rows: pd.DataFrame, params: dict) -> pd.Series:
    """Device-seconds of each row's trial (1,033 prompts) by the model, NaN where it has no fit."""

    def one(r):
        fit = model.fit(r.hardware, r.hardware, r.engine)
        per_prompt = (
            None
            if fit is None
            else fit.seconds_per_prompt(r.model, params[r.model], r.n_gpus, r.batch_size, r.max_new_tokens)
        )
        return float("nan") if per_prompt is None else per_prompt * PAPER_PROMPTS * r.n_gpus

    return pd.Series([one(r) for r in rows.itertuples()], index=rows.index)


def main(appendix: Path) -> None:
    trials = import_paper(appendix)
    params = paper_params()
    committed = cost_model.CostModel.from_json(cost_model.PAPER_MODEL.read_text())
    finished = trials[trials["status"] == "ok"].copy()
    finished["model_s"] = estimate(committed, finished, params)
    out = []
    for model in sorted(params):
        others = cost_model.calibrate(trials[trials["model"] != model], params, f"all but {model}")
        mine = finished[finished["model"] == model]
        out.append(estimate(others, mine, params))
    finished["held_out_s"] = pd.concat(out)

    hours = finished.groupby(["hardware", "engine"])[["device_seconds", "model_s", "held_out_s"]].sum() / 3600
    hours.loc[("all", "all"), :] = hours.sum()
    hours.columns = ["published", "cost model (in-sample)", "cost model (model held out)"]
    print("GPU-hours of the paper's 6,614 finished trials")
    print((hours.assign(**{"in-sample / published": hours.iloc[:, 1] / hours.iloc[:, 0]}).round(2)).to_string())
    per_model = finished.groupby("model")[["device_seconds", "held_out_s"]].sum() / 3600
    per_model["ratio"] = per_model["held_out_s"] / per_model["device_seconds"]
    print("\nEach model held out (GPU-hours): published, estimated by a fit on the other 19, ratio")
    print(per_model.round(2).to_string())
    ratio = per_model["ratio"]
    print(
        f"held out: median ratio {ratio.median():.2f}, range {ratio.min():.2f} to {ratio.max():.2f}; "
        f"within 2x for {((ratio > 0.5) & (ratio < 2)).sum()} of {len(per_model)} models"
    )

    config = load_config(REPO / "configs" / "paper.yaml")
    sweeps, _ = plan(config)
    jobs = plan_cluster(config, sweeps, partitions=read_partitions(config["cluster"]["partitions"])).jobs
    no_loads = dict(config, load_timeout_s=1e-9)  # a load of a nanosecond: the trials alone
    limit = config["trial_timeout_s"]
    rows = [
        ("every trial as estimated, no time limit, no loads", dict(no_loads, trial_timeout_s=float("inf"))),
        (f"each trial at most trial_timeout_s ({limit:g} s), no loads", no_loads),
        ("the plan's figure: capped trials and a load per job", config),
    ]
    rows = [(label, sizing.device_hours(variant, jobs)) for label, variant in rows]
    print(f"\nconfigs/paper.yaml: {len(sweeps)} sweeps in {len(jobs)} jobs, 10,560 trials (GPU-hours)")
    for label, value in rows:
        print(f"  {label}: {value:,.0f} ({value / finished['device_seconds'].sum() * 3600:.2f}x the published 10,277)")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_APPENDIX)
