"""Snakemake entry: RQ1 landscapes (PNG, interactive HTML) and their peaks and plateaus."""

from infpop.analysis.rq1 import landscape_table, write_landscapes
from infpop.analysis.selection import load_selected, write_table
from infpop.logs import setup

log = setup(snakemake)
settings, trials = load_selected(snakemake.input[0], snakemake.params.settings)
pngs = write_landscapes(trials, snakemake.output.png, formats=("png",))
write_landscapes(trials, snakemake.output.html, formats=("html",))
write_table(landscape_table(trials), snakemake.output.features, settings)
energy = [p for p in pngs if p.stem.endswith("_tokens_per_joule")]
log.info(
    f"{len(pngs) - len(energy)} landscapes; {len(energy)} tokens-per-joule landscapes"
    + ("" if energy else " (no trial has an energy reading: NVML, NVIDIA GPUs only)")
)
