"""Snakemake entry: run one sweep (all trials of one hardware/engine/model/n_gpus group)."""
import contextlib
import os
import signal
import sys
from pathlib import Path

from infpop import devices
from infpop.grid import Sweep
from infpop.locks import FolderBusy, SnakemakeGone
from infpop.sizing import SweepJob, part_tokens
from infpop.sweep import SweepError, run_sweep

# Snakemake and SLURM stop a job with SIGTERM: exit through the supervisor's cleanup, which kills
# the worker's process group (its own session, so the signal does not reach it).
signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))

wc = snakemake.wildcards
sweep = Sweep(wc.hardware, wc.engine, wc.model, int(wc.n_gpus))
job = SweepJob(sweep, part_tokens(wc.part))  # the whole sweep, or its trials at one max_new_tokens

with open(snakemake.log[0], "a", buffering=1) as log:

    def progress(line):
        print(line, flush=True)
        print(line, file=log)

    hardware = snakemake.params.config["hardware"][sweep.hardware]
    slots = contextlib.nullcontext()
    if hardware["kind"] == "gpu" and not os.environ.get("CUDA_VISIBLE_DEVICES"):
        # No devices given (not under SLURM): claim free ones, so concurrent local sweeps never
        # share a GPU (the local profile's `gpu` resource keeps the count within the machine's).
        total = hardware.get("gpus_per_node") or devices.visible_device_count()
        slots = devices.claim(sweep.n_gpus, total, wait_s=3600) if total else contextlib.nullcontext()
    try:
        with slots as claimed:
            if claimed is not None:
                os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, claimed))
                progress(f"[{sweep.relpath}] GPUs {os.environ['CUDA_VISIBLE_DEVICES']} (free device slots)")
            manifest = Path(snakemake.output.manifest)
            summary = run_sweep(snakemake.params.config, sweep, manifest.parent, snakemake.input.benchmark,
                                tokens=job.max_new_tokens, manifest=manifest, log=progress, worker_stderr=log)
    except (SweepError, devices.NoFreeDevices, FolderBusy, SnakemakeGone) as exc:
        progress(f"[{sweep.relpath}] cannot run here: {exc}")
        sys.exit(1)
    progress(f"[{job.name}] done: {len(summary['trials'])} trials, {summary['model_loads']} model load(s), "
             f"wall {summary['wall_seconds']:.1f} s, harness overhead {summary['harness_overhead'] or 0:.2f}")
