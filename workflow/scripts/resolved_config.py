"""Snakemake entry: the resolved config (defaults filled), for the report's own Snakemake call."""

import yaml

from infpop.logs import setup

log = setup(snakemake)
with open(snakemake.output[0], "w") as handle:
    yaml.safe_dump(dict(snakemake.params.config), handle, sort_keys=False)
log.info(f"resolved config -> {snakemake.output[0]}")
