"""Snakemake entry: download one hf_id model into models_dir and write its manifest."""

import os
import sys
from pathlib import Path

from infpop.data.hub import HubError, download
from infpop.logs import setup

log = setup(snakemake)
try:
    # the manifest is <models_dir>/<model>.json; the snapshot goes beside it
    download(
        snakemake.wildcards.model,
        snakemake.params.hf_id,
        snakemake.params.revision,
        Path(snakemake.output[0]).parent,
        config_file=os.environ.get("INFPOP_CONFIG_FILES"),  # for messages only: not a param
    )
except HubError as exc:
    # One line the user can act on (a gated or missing model, an unknown revision, no network),
    # in the log and on stderr, rather than a traceback.
    log.error(f"InfPop: {exc}")
    sys.exit(1)
