"""Snakemake entry: RQ1 landscapes (PNG, interactive HTML) and their peaks and plateaus."""
from infpop.analysis import load_selected, write_table
from infpop.analysis.figures import landscape_table, write_landscapes

settings, trials = load_selected(snakemake.input[0], snakemake.params.settings)
pngs = write_landscapes(trials, snakemake.output.png, formats=("png",))
write_landscapes(trials, snakemake.output.html, formats=("html",))
write_table(landscape_table(trials), snakemake.output.features, settings)
with open(snakemake.log[0], "w") as log:
    print(f"{len(pngs)} landscapes", file=log)
