"""Snakemake entry: every optimiser on every landscape of a dataset (evaluations to the optimum)."""

import time

from infpop.analysis.selection import AnalysisSettings, read_trials
from infpop.logs import setup
from infpop.optimise import study
from infpop.optimise.objectives import Objective, landscapes
from infpop.optimise.rq5 import applicable_directions, data_space

if __name__ == "__main__":  # worker processes re-import this file
    log = setup(snakemake)
    started = time.monotonic()
    settings = AnalysisSettings(**snakemake.params.analysis)
    section = snakemake.params.optimise
    trials = read_trials(snakemake.input[0])
    lands = landscapes(trials, settings, Objective(section["objective"], section["latency_p95_limit_s"]))
    at_tokens = trials[trials["max_new_tokens"] == settings.max_new_tokens]
    spaces = {engine: data_space(at_tokens, engine) for engine in at_tokens["engine"].unique()}
    # The prior of a landscape: the same engine and model on the old GPU of a direction ending here.
    prior = {d.new: d.old for d in applicable_directions(section["rq5"]["directions"], set(trials["hardware"]))}
    todo = study.tasks(lands, spaces, section["study"]["optimisers"], section["study"]["seeds"], prior)
    log.info(
        f"optimiser study on {snakemake.input[0]}: {len(todo)} (optimiser, landscape) pairs x "
        f"{section['study']['seeds']} seeds, on {snakemake.threads} process(es)"
    )
    rows = study.run(todo, threads=snakemake.threads)
    table = study.efficiency(rows)
    table["analysis_max_new_tokens"] = settings.max_new_tokens
    table["analysis_duplicates"] = settings.duplicates
    table["partial_oom_counted"] = False  # a configuration that ran out of memory cannot be deployed
    table.to_csv(snakemake.output.efficiency, index=False)
    curves = study.curves(rows)
    curves.to_csv(snakemake.output.curves, index=False)
    study.efficiency_png(curves, snakemake.output.png)
    log.info(table.to_string())
    log.info(f"optimiser study took {time.monotonic() - started:.1f} s")
