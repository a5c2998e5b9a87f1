"""Snakemake entry: one server (hardware, engine, model, n_gpus, server settings) and its load points."""

import signal
import sys
from pathlib import Path

from infpop.logs import setup
from infpop.measure import devices
from infpop.measure.locks import FolderBusy, SnakemakeGone
from infpop.serve.plan import ServeJob
from infpop.serve.session import ServeError, run_serve_job

# Snakemake and SLURM stop a job with SIGTERM: exit through the session's cleanup, which stops the
# server's process group (its own session, so the signal does not reach it).
signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))

log = setup(snakemake)
wc = snakemake.wildcards
job = ServeJob(wc.hardware, wc.engine, wc.model, int(wc.n_gpus), wc.settings)
manifest = Path(snakemake.output.manifest)
try:
    with devices.for_job(snakemake.config["hardware"][job.hardware], job.n_gpus) as claimed:
        if claimed is not None:
            log.info(f"[{job.relpath}] GPUs {','.join(map(str, claimed))} (free device slots)")
        summary = run_serve_job(snakemake.config, job, manifest.parent, Path(snakemake.input.benchmark), manifest)
except (ServeError, FolderBusy, SnakemakeGone, devices.NoFreeDevices) as exc:
    log.error(f"[{job.relpath}] cannot run here: {exc}")
    sys.exit(1)
statuses = list(summary["records"].values())
log.info(
    f"[{job.relpath}] done: {len(statuses)} load point(s) ({statuses.count('ok')} ok, "
    f"{summary['reused_records']} kept), {len(summary['server_starts_s'])} server start(s), "
    f"wall {summary['wall_seconds']:.1f} s"
)
