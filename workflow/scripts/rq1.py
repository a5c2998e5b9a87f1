"""Snakemake entry: RQ1 landscapes (PNG, interactive HTML) and their peaks and plateaus."""
from pathlib import Path

from infpop.analysis import load_selected, write_table
from infpop.analysis.figures import landscape_html, landscape_png, landscape_table

settings, trials = load_selected(snakemake.input[0], snakemake.params.settings)
png_dir, html_dir = Path(snakemake.output.png), Path(snakemake.output.html)
png_dir.mkdir(parents=True, exist_ok=True)
html_dir.mkdir(parents=True, exist_ok=True)
groups = trials.groupby(["hardware", "engine", "model"], sort=True)
for (hardware, engine, model), one in groups:
    title = f"{model}, {engine}, {hardware} ({settings.max_new_tokens} new tokens)"
    landscape_png(one, png_dir / f"{hardware}_{engine}_{model}.png", title)
    landscape_html(one, html_dir / f"{hardware}_{engine}_{model}.html", title)
write_table(landscape_table(trials), snakemake.output.features, settings)
with open(snakemake.log[0], "w") as log:
    print(f"{groups.ngroups} landscapes", file=log)
