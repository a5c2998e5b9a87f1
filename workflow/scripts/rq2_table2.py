"""Snakemake entry: the paper's Table II for one hardware (with the mean and median improvements
as two last rows), and the GPU-scaling figure of each engine."""

from pathlib import Path

import pandas as pd

from infpop.analysis.rq2 import gpu_scaling_png, table2, table2_markdown, table2_summary
from infpop.analysis.selection import load_selected, settings_note, write_table
from infpop.logs import setup

log = setup(snakemake)
settings, trials = load_selected(snakemake.input[0], snakemake.params.settings)
hardware = snakemake.wildcards.hardware
# Improvements from throughputs rounded to one decimal, as the paper's Table II computed them.
table = table2(trials, hardware, round_throughput=1)
summary = table2_summary(table).set_index("quantity")["value"]
extra = pd.DataFrame(
    [
        {
            "hardware": hardware,
            "model": statistic,
            "note": "",
            **{f"vllm_{label}_improvement": summary[f"{statistic}_{label}_improvement"] for label in ("same", "best")},
        }
        for statistic in ("mean", "median")
    ]
)
table = pd.concat([table, extra], ignore_index=True)
write_table(table, snakemake.output.csv, settings)
Path(snakemake.output.md).write_text(
    f"# Table II: throughput at batch size 1 on {hardware}\n\n{table2_markdown(table)}\n{settings_note(settings)}\n"
)
figures = Path(snakemake.output.png)
figures.mkdir(parents=True, exist_ok=True)
for engine in sorted(set(trials.loc[trials["hardware"] == hardware, "engine"])):
    gpu_scaling_png(trials, hardware, engine, figures / f"{engine}.png")
log.info(f"{len(trials)} trials analysed")
