"""Snakemake entry: the resolved config (defaults filled), for the report's own Snakemake call."""
import yaml

with open(snakemake.output[0], "w") as handle:
    yaml.safe_dump(dict(snakemake.params.config), handle, sort_keys=False)
open(snakemake.log[0], "w").close()
