"""Snakemake entry: run one sweep (all trials of one hardware/engine/model/n_gpus group)."""

import os
import signal
import sys
from pathlib import Path

from infpop.cluster.sizing import SweepJob, part_tokens
from infpop.logs import job_log_stream, setup
from infpop.measure import devices
from infpop.measure.grid import DEFAULT_SETTINGS, Sweep
from infpop.measure.locks import FolderBusy, SnakemakeGone
from infpop.measure.sweep import SweepError, run_sweep

# Snakemake and SLURM stop a job with SIGTERM: exit through the supervisor's cleanup, which kills
# the worker's process group (its own session, so the signal does not reach it).
signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))

log = setup(snakemake)
wc = snakemake.wildcards
sweep = Sweep(wc.hardware, wc.engine, wc.model, int(wc.n_gpus), wc.variant.removeprefix("/") or DEFAULT_SETTINGS)
job = SweepJob(sweep, part_tokens(wc.part))  # the whole sweep, or its trials at one max_new_tokens
hardware = snakemake.config["hardware"][sweep.hardware]
if snakemake.config["rehearsal"]:
    hardware = {**hardware, "kind": "cpu"}  # a rehearsal simulates its GPUs: it claims none
try:
    # No devices given (not under SLURM): free ones are claimed, so concurrent local sweeps never
    # share a GPU (the local profile's `gpu` resource keeps the count within the machine's).
    with devices.for_job(hardware, sweep.n_gpus) as claimed:
        if claimed is not None:
            log.info(f"[{sweep.relpath}] GPUs {os.environ['CUDA_VISIBLE_DEVICES']} (free device slots)")
        manifest = Path(snakemake.output.manifest)
        summary = run_sweep(
            snakemake.config,
            sweep,
            manifest.parent,
            snakemake.input.benchmark,
            tokens=job.max_new_tokens,
            manifest=manifest,
            worker_stderr=job_log_stream(),
        )
except (SweepError, devices.NoFreeDevices, FolderBusy, SnakemakeGone) as exc:
    log.error(f"[{sweep.relpath}] cannot run here: {exc}")
    sys.exit(1)
log.info(
    f"[{job.name}] done: {len(summary['trials'])} trials, {summary['model_loads']} model load(s), "
    f"wall {summary['wall_seconds']:.1f} s, harness overhead {summary['harness_overhead'] or 0:.2f}"
)
