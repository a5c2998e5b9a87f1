"""Snakemake entry: do the engines generate the same greedy tokens across batch sizes?"""

from pathlib import Path

from infpop.analysis.agreement import agreement_png, agreement_table
from infpop.logs import setup
from infpop.measure import records
from infpop.measure.aggregate import read_manifest

log = setup(snakemake)
trials = [
    records.read(Path(manifest).parent / relpath)
    for manifest in snakemake.input
    for relpath in read_manifest(manifest)["trials"]
]
table = agreement_table(trials)
table.to_csv(snakemake.output.table, index=False)
agreement_png(table, snakemake.output.png)
for (comparison, engine), group in table.groupby(["comparison", "engine"]):
    log.info(f"{comparison} {engine}: mean equal share {group['equal_share'].mean():.3f} over {len(group)} trials")
