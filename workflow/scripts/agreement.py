"""Snakemake entry: do the engines generate the same greedy tokens across batch sizes?"""
from pathlib import Path

from infpop import records
from infpop.aggregate import read_manifest
from infpop.analysis.agreement import agreement_png, agreement_table

trials = [records.read(Path(manifest).parent / relpath)
          for manifest in snakemake.input for relpath in read_manifest(manifest)["trials"]]
table = agreement_table(trials)
table.to_csv(snakemake.output.table, index=False)
agreement_png(table, snakemake.output.png)
with open(snakemake.log[0], "w") as log:
    for (comparison, engine), group in table.groupby(["comparison", "engine"]):
        print(f"{comparison} {engine}: mean equal share {group['equal_share'].mean():.3f} over {len(group)} trials",
              file=log)
