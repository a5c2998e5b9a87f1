"""Snakemake entry: RQ5, the upgrade/downgrade re-tuning experiments replayed on a dataset."""

import json
import time
from pathlib import Path

from infpop.analysis.selection import AnalysisSettings, read_trials
from infpop.logs import setup
from infpop.optimise import rq5
from infpop.optimise.objectives import Objective

if __name__ == "__main__":  # worker processes re-import this file
    log = setup(snakemake)
    started = time.monotonic()
    settings = AnalysisSettings(**snakemake.params.analysis)
    section = snakemake.params.optimise
    replay = rq5.ReplaySettings(**{k: section["rq5"][k] for k in ("optimiser", "evaluations", "repeats", "seed")})
    trials = read_trials(snakemake.input[0])
    directions = rq5.applicable_directions(section["rq5"]["directions"], set(trials["hardware"]))
    experiments = []
    if "faithful" in snakemake.params.modes:
        experiments += rq5.faithful_experiments(trials, directions, settings.max_new_tokens)
    if "corrected" in snakemake.params.modes:
        objective = Objective(section["objective"], section["latency_p95_limit_s"])
        experiments += rq5.corrected_experiments(trials, directions, settings, objective)
    log.info(
        f"RQ5 on {snakemake.input[0]}: {len(experiments)} experiments ({', '.join(snakemake.params.modes)}; "
        f"{', '.join(d.name for d in directions)}), {replay.repeats} x {replay.optimiser} with "
        f"{replay.evaluations} evaluations each, on {snakemake.threads} process(es)"
    )
    results = rq5.run_all(experiments, replay, threads=snakemake.threads)
    models = Path(snakemake.output.models)
    models.mkdir(parents=True, exist_ok=True)
    for model in sorted({r["model"] for r in results}):
        mine = [r for r in results if r["model"] == model]
        (models / f"{model}.json").write_text(json.dumps(mine, indent=1) + "\n")
    summary = rq5.summary(results)
    summary["analysis_max_new_tokens"] = settings.max_new_tokens
    # The faithful mode reads a configuration's first row and counts trials that ran out of
    # memory part-way, as the script did; the corrected mode resolves repetitions as the analysis
    # does and counts finished trials only.
    faithful = summary["mode"] == "faithful"
    summary["duplicates"] = faithful.map({True: "first", False: settings.duplicates})
    summary["partial_oom_counted"] = faithful
    summary.to_csv(snakemake.output.summary, index=False)
    rq5.rq5_violin_png(results, snakemake.output.violin)
    log.info(summary.to_string())
    log.info(f"RQ5 replay took {time.monotonic() - started:.1f} s")
