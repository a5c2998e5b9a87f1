"""A budgeted run (`budget.run: true`): the grid's trials chosen and measured by the budget study's
own run (infpop.budget.study.run: the same order, strategies and ledger), on the engines, through
the sweeps' supervisors, one job per (hardware, engine) (docs/budget.md).

The budget (budget.device_hours, or budget.fraction of the cost model's estimate of the full grid)
is shared between the (hardware, engine) jobs (each needs its own devices and environment, so each
keeps a ledger of its own) as the study's order would spend it on the whole grid on the cost
model's estimates (`shares`). Within a job, the study's order: the analyses' max_new_tokens first,
each (model, GPUs) cheapest first, by the batch-size strategies chosen; the optimiser with what is
left; the other max_new_tokens; the repetitions.

The ledger counts what the study counts: each trial's device-seconds (its record's) and one model
load per sweep (the first trial's record's). A trial kept from an earlier run is charged its
record again, so a re-run takes the same path and measures nothing the first run did not (only a
changed trial is measured again). A worker is reloaded where the order comes back to a sweep
after another's (one engine holds the devices at a time): those reloads are real time the ledger
does not count; the job's summary (budget.json) gives both.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from infpop import atomic
from infpop.budget.strategies import Ledger, Trial
from infpop.budget.study import ConfigStudy, Grid, run
from infpop.measure import sequential
from infpop.measure.grid import Sweep, TrialKey, plan
from infpop.measure.grid import devices as sweep_devices
from infpop.measure.sweep import Supervisor, SweepSummary

logger = logging.getLogger(__name__)

#: A trial's identity in budget.json.
TRIAL_FIELDS = ("hardware", "engine", "model", "n_gpus", "max_new_tokens", "batch_size")


def key(sweep: Sweep) -> tuple[str, str, str, int]:
    """A sweep as the study's grid names it (a budgeted run has no engine_arg_axes variants)."""
    return (sweep.hardware, sweep.engine, sweep.model, sweep.n_gpus)


def groups(config: dict) -> dict[tuple[str, str], list[Sweep]]:
    """The plan's sweeps by (hardware, engine): one budgeted job each."""
    sweeps, _ = plan(config)
    grouped: dict[tuple[str, str], list[Sweep]] = {}
    for sweep in sweeps:
        grouped.setdefault((sweep.hardware, sweep.engine), []).append(sweep)
    return grouped


@dataclass(frozen=True)
class Share:
    """One job's part of the budget: its device-seconds, of its full grid's estimated ones."""

    hardware: str
    engine: str
    sweeps: tuple[Sweep, ...]
    seconds: float
    full_seconds: float


@dataclass
class Estimated:
    """A ledger's source that measures nothing: every trial runs for its estimate as the plan sizes
    it, each sweep loads in its estimated time. The budget's shares are planned on it."""

    built: ConfigStudy

    def answer(self, trial: Trial, rep: int, stopping) -> tuple[str, float | None, float]:
        return "ok", None, self.built.planned(trial) / trial[3]

    def load_seconds(self, where: tuple) -> float:
        return self.built.sizing.load_seconds(self.built.config, *where[:3])


def shares(config: dict) -> list[Share]:
    """The budget shared between the (hardware, engine) jobs as the study's order would spend it
    on the whole grid (every batch size, the analyses' max_new_tokens first, each (model, GPUs)
    cheapest first) if every trial took its estimate: each job gets what that order spends on its
    trials and loads, and the job the order stops in also what is left. Each job then spends its
    share with the strategies chosen."""
    built = ConfigStudy(config)
    estimated = Estimated(built)
    budget = built.budget_seconds()
    settings = dataclasses.replace(built.plan(), strategies=frozenset(), budget_seconds=budget, margin=1.0)
    ledger = run(estimated, built.grid, settings, built.planned)
    spent: dict[tuple[str, str], float] = {}
    for trial, measured in ledger.measured.items():
        spent[trial[:2]] = spent.get(trial[:2], 0.0) + measured.device_seconds
    for where in ledger.loaded:
        spent[where[:2]] = spent.get(where[:2], 0.0) + estimated.load_seconds(where) * where[3]
    if ledger.refused is not None:  # the job the order stopped in gets what is left
        group = ledger.refused[:2]
        spent[group] = spent.get(group, 0.0) + budget - ledger.spent
    return [
        Share(
            hardware,
            engine,
            tuple(sweeps),
            spent.get((hardware, engine), 0.0),
            built.full_estimate_seconds([key(s) for s in sweeps]),
        )
        for (hardware, engine), sweeps in sorted(groups(config).items())
    ]


def describe(config: dict, found: list[Share]) -> str:
    """What a budgeted run will spend, said before it runs."""
    budget = sum(share.seconds for share in found) / 3600
    full = sum(share.full_seconds for share in found) / 3600
    jobs = ", ".join(f"{s.hardware}/{s.engine} {s.seconds / 3600:,.2f}" for s in found)
    strategies = ", ".join(config["budget"]["strategies"]) or "none (every batch size)"
    return (
        f"InfPop budgeted run: {budget:,.2f} device-hours ({budget / full:.0%} of the {full:,.2f} the cost model "
        f"estimates for the full grid, each trial once) in {len(found)} job(s), one per hardware and engine: "
        f"{jobs}; strategies: {strategies}; the analyses' max_new_tokens first (docs/budget.md)"
    )


def share_of(config: dict, hardware: str, engine: str) -> Share:
    for share in shares(config):
        if (share.hardware, share.engine) == (hardware, engine):
            return share
    raise ValueError(f"the plan has no sweep of {engine} on {hardware}")


@dataclass
class Measuring:
    """A ledger's source that measures: each trial through the supervisor of its sweep, its
    record written as a sweep writes it (and kept from an earlier run where it still holds). One
    worker at a time: the last sweep's stops before another's loads."""

    config: dict
    trials_dir: Path
    benchmark_file: Path
    worker_stderr: object = None
    supervisors: dict[tuple, Supervisor] = field(default_factory=dict)
    first_records: dict[tuple, dict] = field(default_factory=dict)
    current: tuple | None = None

    def _supervisor(self, where: tuple) -> Supervisor:
        if self.current is not None and self.current != where:
            self.supervisors[self.current].stop_worker()
        if where not in self.supervisors:
            sweep = Sweep(*where)
            folder = self.trials_dir / sweep.relpath
            self.supervisors[where] = Supervisor(
                self.config, sweep, folder, self.benchmark_file, worker_stderr=self.worker_stderr
            )
        self.current = where
        return self.supervisors[where]

    def answer(self, trial: Trial, rep: int, stopping: sequential.Settings | None) -> tuple[str, float | None, float]:
        """One repetition of a trial: (status, throughput, device-seconds per GPU). Within-trial
        sampling is the supervisor's (budget.sequential), not `stopping`."""
        where, (n_gpus, tokens, batch_size) = trial[:4], trial[3:]
        started = time.monotonic()
        supervisor = self._supervisor(where)
        record, _ = supervisor.measure(TrialKey(tokens, batch_size, rep))
        supervisor.summary.wall_seconds += time.monotonic() - started  # its load, when it loaded, included
        self.first_records.setdefault(where, record)
        device_seconds = (record.get("cost") or {}).get("device_seconds") or 0.0
        return record["status"], record["throughput_tokens_per_s"], device_seconds / n_gpus

    def load_seconds(self, where: tuple) -> float:
        """A sweep's load, per GPU (the ledger charges it x GPUs): its first trial's record's."""
        record = self.first_records.get(where) or {}
        load = (record.get("timings") or {}).get("load_seconds") or 0.0
        return load * sweep_devices(self.config, Sweep(*where)) / where[3]

    def close(self, graceful: bool) -> None:
        for supervisor in self.supervisors.values():
            supervisor.close(graceful)


def spend(config: dict, share: Share, trials_dir: Path, benchmark_file: Path, worker_stderr=None):
    """Run one (hardware, engine) job's share of the budget (`share_of`). Returns (each sweep's
    manifest, as the sweep rule writes it, by sweep; the job's ledger summary)."""
    hardware, engine = share.hardware, share.engine
    built = ConfigStudy(config)
    grid = Grid(tuple(key(s) for s in share.sweeps), built.grid.batch_sizes, built.grid.max_new_tokens)
    chosen = frozenset(config["budget"]["strategies"])
    settings = dataclasses.replace(
        built.plan(), strategies=chosen, budget_seconds=share.seconds, stopping=sequential.Settings.from_config(config)
    )
    logger.info(
        f"budgeted run of {engine} on {hardware}: {share.seconds / 3600:,.3f} of the budget's device-hours "
        f"(its full grid: about {share.full_seconds / 3600:,.3f}), {len(share.sweeps)} sweep(s), strategies "
        f"{sorted(chosen) or 'none (every batch size, the analyses max_new_tokens first)'}"
    )
    source = Measuring(config, Path(trials_dir), Path(benchmark_file), worker_stderr)
    graceful = False
    try:
        ledger = run(source, grid, settings, built.estimate, seed=0)
        graceful = True
    finally:
        source.close(graceful)
    manifests = {}
    for sweep in share.sweeps:
        supervisor = source.supervisors.get(key(sweep))
        if supervisor is None:  # the budget never reached it
            summary = SweepSummary(sweep, devices=sweep_devices(config, sweep), simulated=bool(config.get("rehearsal")))
        else:
            summary = supervisor.summary
        manifests[sweep] = summary.to_json()
    return manifests, ledger_summary(ledger, share, chosen, manifests)


def ledger_summary(ledger: Ledger, share: Share, chosen: frozenset, manifests: dict) -> dict:
    """budget.json: the share, what the ledger spent and on what, in the order measured, why it
    stopped, and the job's real device-seconds (the reloads the ledger does not count included)."""
    real = sum(m["cost"]["device_seconds"] for m in manifests.values())
    return {
        "hardware": share.hardware,
        "engine": share.engine,
        "strategies": sorted(chosen),
        "budget_device_hours": share.seconds / 3600,
        "full_estimate_device_hours": share.full_seconds / 3600,
        "spent_device_hours": ledger.spent / 3600,
        "stopped": "budget spent" if ledger.refused else "every chosen trial measured",
        "refused": list(ledger.refused) if ledger.refused else None,
        "job_device_hours": real / 3600,
        "model_loads": sum(m["model_loads"] for m in manifests.values()),
        "trials": [
            {
                "trial": dict(zip(TRIAL_FIELDS, t, strict=True)),
                "status": m.status,
                "throughput_tokens_per_s": m.throughput,
                "repetitions": m.repetitions,
                "device_seconds": m.device_seconds,
            }
            for t, m in ledger.measured.items()
        ],
    }


def write(manifests: dict, summary: dict, manifest_paths: dict, ledger_path: Path) -> None:
    for sweep, content in manifests.items():
        atomic.write_text(Path(manifest_paths[sweep]), json.dumps(content, indent=1) + "\n")
    atomic.write_text(Path(ledger_path), json.dumps(summary, indent=1) + "\n")
