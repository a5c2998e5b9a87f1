"""Snakemake entry: a budgeted run's job of one (hardware, engine) (infpop/budget/spend.py)."""

import signal
import sys
from pathlib import Path

from infpop.budget import spend
from infpop.logs import job_log_stream, setup
from infpop.measure import devices
from infpop.measure.locks import FolderBusy, SnakemakeGone
from infpop.measure.sweep import MANIFEST_NAME, SweepError

# Snakemake and SLURM stop a job with SIGTERM: exit through the supervisors' cleanup, which kills
# the worker's process group.
signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))

log = setup(snakemake)
config = snakemake.config
hardware_name, engine = snakemake.params.hardware, snakemake.params.engine
trials_dir = Path(snakemake.output.ledger).parents[2]  # <trials>/<hardware>/<engine>/budget.json
share = spend.share_of(config, hardware_name, engine)
hardware = config["hardware"][hardware_name]
if config["rehearsal"]:
    hardware = {**hardware, "kind": "cpu"}  # a rehearsal simulates its GPUs: it claims none
paths = {sweep: trials_dir / sweep.relpath / MANIFEST_NAME for sweep in share.sweeps}
assert sorted(map(str, paths.values())) == sorted(snakemake.output.manifests), "the rule's outputs are its sweeps'"
try:
    with devices.for_job(hardware, max(sweep.n_gpus for sweep in share.sweeps)):
        manifests, summary = spend.spend(config, share, trials_dir, Path(snakemake.input.benchmark), job_log_stream())
except (SweepError, devices.NoFreeDevices, FolderBusy, SnakemakeGone) as exc:
    log.error(f"[budget {hardware_name}/{engine}] cannot run here: {exc}")
    sys.exit(1)
spend.write(manifests, summary, paths, Path(snakemake.output.ledger))
log.info(
    f"[budget {hardware_name}/{engine}] {summary['stopped']}: {len(summary['trials'])} trial(s), "
    f"{summary['spent_device_hours']:,.3f} of {summary['budget_device_hours']:,.3f} device-hours by the ledger "
    f"({summary['job_device_hours']:,.3f} by the job's clock, {summary['model_loads']} model load(s))"
)
