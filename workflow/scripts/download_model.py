"""Snakemake entry: download one hf_id model into models_dir and write its manifest."""
import sys
from pathlib import Path

from infpop.hub import HubError, download

with open(snakemake.log[0], "w", buffering=1) as log:

    def progress(line):
        print(line, flush=True)
        print(line, file=log)

    try:
        # the manifest is <models_dir>/<model>.json; the snapshot goes beside it
        download(snakemake.wildcards.model, snakemake.params.hf_id, snakemake.params.revision,
                 Path(snakemake.output[0]).parent, log=progress, config_file=snakemake.params.config_file)
    except HubError as exc:
        # One line the user can act on (a gated or missing model, an unknown revision, no
        # network), in the log and on stderr, rather than a traceback.
        print(f"InfPop: {exc}", file=log)
        sys.exit(f"InfPop: {exc}")
