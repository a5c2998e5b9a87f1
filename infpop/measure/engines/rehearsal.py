"""The rehearsal: an engine that answers each trial from a trials table instead of running a model.

A config with a `rehearsal` section runs its grid through the real workflow (planning, sizing and
splitting, the sweeps as jobs, the worker and its supervisor, aggregation, the analyses, the
report) with this engine in every sweep's worker, on the CPU, without a model file. Each trial is
looked up in a tidy trials table (results/<dataset>/trials.csv: the paper's published trials by
default) by (hardware, engine simulated, model, n_gpus, max_new_tokens, batch_size, rep), and
answered as recorded:

- its time on a virtual clock, never slept: the load (the table's load_seconds where it has them,
  else the config's estimate from the model's size), and per batch a share of the trial's
  recorded time, prompts x max_new_tokens / throughput, in proportion to the batch's prompts with
  multiplicative noise (lognormal, the coefficient of variation calibrated on our own per-batch
  records: bench/batch_noise.py), seeded by the trial's identity, so the batches sum to the
  recorded throughput exactly and the same seed gives the same records;
- exactly max_new_tokens token ids per prompt (a fixed id), so the counts are real;
- its status: out of memory, an error, a timeout, `unsupported` raised at the batch where the trial
  stopped, a crash by the worker process dying, as a real one would. A trial that stopped part-way
  with a throughput (the paper's partial out-of-memory rows) keeps it: the batches before the stop
  carry it; the table does not say which batch stopped, so one is drawn (seeded) among those after
  the first;
- a configuration the table lacks is `unsupported` (never run there), with that reason, not
  invented.

Which of a configuration's rows answers which repetition (`duplicates`): `last` (the paper's
table, whose duplicates are re-runs and whose replay keeps the last): repetition 0 is the last row,
repetition 1 the one before, and so on; `replicates` (a table of our own repetitions): repetition r
is the row of rep r. So a rehearsal of one repetition sees what the replay's analyses see.
"""

from __future__ import annotations

import csv
import hashlib
import math
import os
import random
import signal
import statistics
from dataclasses import dataclass
from pathlib import Path

from infpop.measure.engines.base import Engine as BaseEngine
from infpop.measure.engines.base import GenerationResult, OutOfMemory
from infpop.measure.sequential import trial_seed
from infpop.trials import TRIAL_COLUMNS

#: `rehearsal.trials` naming the paper's published trials (the import_paper rule's table).
PAPER = "paper"
#: The token id every rehearsed prompt "generates" (the counts are what matter).
TOKEN_ID = 0
#: The table's columns the rehearsal reads: those that name a trial and say how it went.
NEEDED_COLUMNS = tuple(TRIAL_COLUMNS)
#: The statuses a table may record and how each is rehearsed (skipped_oom: never run there).
STATUSES = ("ok", "oom", "error", "crashed", "timeout", "unsupported", "skipped_oom")


class RehearsalTableError(ValueError):
    """A trials table the rehearsal cannot read."""


class RehearsedFailure(RuntimeError):
    """A trial (or load) the table records as failed: `status` is what the worker reports, and
    `simulated_seconds` what the failed batch took on the virtual clock."""

    def __init__(self, status: str, message: str, simulated_seconds: float = 0.0):
        super().__init__(message)
        self.status, self.simulated_seconds = status, simulated_seconds


# -- what a config's rehearsal names -----------------------------------------------------------------


def table_path(config: dict) -> Path:
    """The trials table a config's rehearsal answers from: the paper's (the import_paper rule's
    results/paper/trials.csv) or the file `rehearsal.trials` names."""
    trials = config["rehearsal"]["trials"]
    return Path(config["results_dir"]) / "paper" / "trials.csv" if trials == PAPER else Path(trials)


def duplicates(config: dict) -> str:
    """How the table's rows of one configuration answer its repetitions (module docstring)."""
    section = config["rehearsal"]
    return section["duplicates"] or ("last" if section["trials"] == PAPER else "replicates")


def load_estimate(config: dict, engine: str, model: str) -> float:
    """The load seconds of a model the table has no load time for: the config's start-up plus
    seconds per billion parameters (models.<key>.params_billion)."""
    load = config["rehearsal"]["load_s"][engine]
    return load["base"] + load["per_billion_params"] * (config["models"][model].get("params_billion") or 0)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def engine_arguments(config: dict, sweep, table: Path, sha256: str) -> dict:
    """What the rehearsal engine of one sweep is given (as its engine_args): the table, the
    identity of the sweep it stands in for, and how it answers."""
    section = config["rehearsal"]
    return {
        "trials": str(table),
        "sha256": sha256,
        "seed": section["seed"],
        "duplicates": duplicates(config),
        "hardware": sweep.hardware,
        "engine": sweep.engine,
        "model": sweep.model,
        "n_gpus": sweep.n_gpus,
        "batch_noise_cv": section["batch_noise_cv"][sweep.engine],
        "load_seconds": load_estimate(config, sweep.engine, sweep.model),
        "trial_timeout_s": config["trial_timeout_s"],
    }


# -- the table ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One trial of the table, as the rehearsal answers it."""

    rep: int
    status: str
    throughput: float | None
    error: str | None
    load_seconds: float | None


def _number(text: str | None) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def read_table(path: Path) -> dict[tuple[str, str, str, int], dict[tuple[int, int], list[Row]]]:
    """Every trial of the table: (hardware, engine, model, n_gpus) -> (max_new_tokens,
    batch_size) -> its rows, by rep (then the table's order)."""
    try:
        handle = open(path, newline="")
    except OSError as exc:
        raise RehearsalTableError(f"cannot read the rehearsal's trials table {path}: {exc.strerror}") from None
    with handle:
        reader = csv.DictReader(handle)
        missing = [c for c in NEEDED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise RehearsalTableError(f"{path} is not a trials table: it lacks the columns {', '.join(missing)}")
        found: dict[tuple[str, str, str, int], dict[tuple[int, int], list[Row]]] = {}
        for line, row in enumerate(reader, start=2):
            try:
                identity = [int(float(row[k])) for k in ("n_gpus", "max_new_tokens", "batch_size", "rep")]
            except ValueError:
                raise RehearsalTableError(
                    f"{path} line {line}: n_gpus, max_new_tokens, batch_size and rep must be integers"
                ) from None
            if row["status"] not in STATUSES:
                raise RehearsalTableError(f"{path} line {line}: unknown status {row['status']!r} (known: {STATUSES})")
            sweep = found.setdefault((row["hardware"], row["engine"], row["model"], identity[0]), {})
            sweep.setdefault((identity[1], identity[2]), []).append(
                Row(
                    identity[3],
                    row["status"],
                    _number(row["throughput_tokens_per_s"]),
                    row.get("error") or None,
                    _number(row.get("load_seconds")),
                )
            )
    for sweep in found.values():
        for rows in sweep.values():
            rows.sort(key=lambda r: r.rep)  # stable: the table's order among equal reps
    return found


def read_rows(path: Path, hardware: str, engine: str, model: str, n_gpus: int) -> dict[tuple[int, int], list[Row]]:
    """The table's trials of one sweep: (max_new_tokens, batch_size) -> its rows, by rep (then
    the table's order)."""
    return read_table(path).get((hardware, engine, model, n_gpus), {})


def recorded_load_seconds(rows: dict[tuple[int, int], list[Row]]) -> float | None:
    """The median load time a sweep's rows record (None: none recorded)."""
    recorded = [r.load_seconds for found in rows.values() for r in found if r.load_seconds]
    return statistics.median(recorded) if recorded else None


def answering_row(rows: list[Row], rep: int, duplicates: str) -> Row | None:
    """The row that answers repetition `rep` of a configuration (None: the table has none)."""
    if duplicates == "last":
        return rows[-1 - rep] if rep < len(rows) else None
    return next((row for row in rows if row.rep == rep), None)


def batch_seconds(
    batch_sizes: list[int], max_new_tokens: int, throughput: float, cv: float, rng: random.Random
) -> list[float]:
    """Seconds of each batch: together prompts x max_new_tokens / throughput, shared in proportion
    to each batch's prompts times lognormal noise of coefficient of variation `cv` (mean 1)."""
    sigma = math.sqrt(math.log1p(cv * cv))
    weights = [n * math.exp(sigma * rng.gauss(0.0, 1.0) - sigma * sigma / 2) for n in batch_sizes]
    total = sum(batch_sizes) * max_new_tokens / throughput
    scale = total / sum(weights)
    return [w * scale for w in weights]


def trial_rng(seed: int, *identity) -> random.Random:
    """A generator seeded by the rehearsal's seed and the trial's identity (not Python's hash,
    which changes between processes)."""
    return random.Random(trial_seed(seed, *identity))


@dataclass
class TrialPlan:
    """How one rehearsed trial goes: the seconds of each batch that completes, then (where the
    table says it stopped) the failure raised at the next batch, or the worker killed there."""

    seconds: list[float]
    failure: BaseException | None = None
    crash: bool = False


def plan_trial(
    row: Row, tokens: int, batch_sizes: list[int], cv: float, rng: random.Random, trial_timeout_s: float, recorded=""
) -> TrialPlan:
    """How the trial a table row records goes (its batches' seconds, its failure), with per-batch
    noise `cv` drawn from `rng`; `recorded` ends the failures' messages."""
    if row.status in ("unsupported", "skipped_oom"):
        return TrialPlan([], RehearsedFailure("unsupported", f"{row.error or row.status} {recorded}"))
    if row.status == "ok" and not row.throughput:
        return TrialPlan([], RehearsedFailure("unsupported", f"no throughput recorded {recorded}"))
    # the batches that complete: all of an ok trial; before the stop of one with a throughput
    # (drawn among those after the first: the table does not say where); none otherwise
    completed = len(batch_sizes)
    if row.status != "ok":
        completed = rng.randint(1, len(batch_sizes) - 1) if row.throughput and len(batch_sizes) > 1 else 0
    seconds = []
    if completed:
        seconds = batch_seconds(batch_sizes[:completed], tokens, row.throughput, cv, rng)
    if row.status == "ok":
        return TrialPlan(seconds)
    if row.status == "crashed":
        return TrialPlan(seconds, crash=True)
    if row.status == "oom":
        failure = OutOfMemory(f"CUDA out of memory {recorded}")
        failure.simulated_seconds = 0.0  # an allocation that fails fails at once
    elif row.status == "timeout":  # the supervisor would have waited out the limit
        failure = RehearsedFailure(
            "timeout",
            f"trial exceeded trial_timeout_s={trial_timeout_s} {recorded}",
            max(0.0, trial_timeout_s - sum(seconds)),
        )
    else:
        failure = RehearsedFailure("error", f"{row.error or 'error'} {recorded}")
    return TrialPlan(seconds, failure)


class Engine(BaseEngine):
    name = "rehearsal"
    simulated = True

    def load(self) -> float:
        args = self.spec.engine_args
        self.args = args
        self.where = f"{args['hardware']}/{args['engine']}/{args['model']}/g{args['n_gpus']}"
        self.rows = read_rows(Path(args["trials"]), args["hardware"], args["engine"], args["model"], args["n_gpus"])
        if not self.rows:
            raise RehearsedFailure(
                "unsupported", f"not in the rehearsal's trials table {args['trials']}: {self.where} was never run there"
            )
        recorded = recorded_load_seconds(self.rows)
        self.load_seconds = recorded or args["load_seconds"]
        self.load_source = "trials table" if recorded else "estimate (rehearsal.load_s)"
        self.plan: TrialPlan | None = None
        return self.load_seconds

    def begin_trial(self, max_new_tokens: int, batch_size: int, rep: int, batch_sizes: list[int]) -> None:
        self.plan, self.batch = self._plan(max_new_tokens, batch_size, rep, batch_sizes), 0

    def _plan(self, tokens: int, batch_size: int, rep: int, batch_sizes: list[int]) -> TrialPlan:
        args = self.args
        configuration = f"{self.where} t{tokens} b{batch_size}"
        rows = self.rows.get((tokens, batch_size), [])
        row = answering_row(rows, rep, args["duplicates"])
        if row is None:
            reason = (
                f"{configuration} is not in the rehearsal's trials table {args['trials']} (never run there)"
                if not rows
                else f"the rehearsal's trials table {args['trials']} has {len(rows)} run(s) of {configuration}, "
                f"none for repetition {rep} (duplicates: {args['duplicates']})"
            )
            return TrialPlan([], RehearsedFailure("unsupported", reason))
        recorded = f"(rehearsed: {args['trials']} records {row.status} for {configuration} r{rep})"
        rng = trial_rng(args["seed"], self.where, tokens, batch_size, rep)
        return plan_trial(row, tokens, batch_sizes, args["batch_noise_cv"], rng, args["trial_timeout_s"], recorded)

    def begin_batch(self, index: int) -> None:
        self.batch = index  # a sequential trial times its batches out of order: answer by position

    def generate(self, prompts: list[str], max_new_tokens: int) -> GenerationResult:
        if self.plan is None:  # outside a trial (the warm-up): the configuration's recorded time
            return self._result(prompts, max_new_tokens, self._untimed_seconds(len(prompts), max_new_tokens))
        index, self.batch = self.batch, self.batch + 1
        if index < len(self.plan.seconds):
            return self._result(prompts, max_new_tokens, self.plan.seconds[index])
        if self.plan.crash:  # the worker dies, as a real one does: the supervisor records `crashed`
            os.kill(os.getpid(), signal.SIGKILL)
        raise self.plan.failure or RuntimeError(f"{self.where}: more batches than the trial has")

    def _untimed_seconds(self, prompts: int, tokens: int) -> float:
        row = answering_row(self.rows.get((tokens, prompts), []), 0, self.args["duplicates"])
        return prompts * tokens / row.throughput if row is not None and row.throughput else 0.0

    @staticmethod
    def _result(prompts: list[str], max_new_tokens: int, seconds: float) -> GenerationResult:
        # no tokenizer: the prompts are not tokenised (prompt_tokens 0); the new tokens are exact
        return GenerationResult(
            new_token_ids=[[TOKEN_ID] * max_new_tokens for _ in prompts], prompt_tokens=0, simulated_seconds=seconds
        )

    @classmethod
    def classify_failure(cls, exc, printed=()):
        if isinstance(exc, RehearsedFailure):
            return exc.status, None
        return super().classify_failure(exc, printed)

    @classmethod
    def leaves_engine_unusable(cls, exc: BaseException) -> bool:
        # after a timeout the supervisor kills the worker: the next trial gets a fresh one
        return isinstance(exc, RehearsedFailure) and exc.status == "timeout"

    def recover_from_oom(self) -> None:
        """Nothing was allocated."""

    def effective_settings(self) -> dict:
        args = self.args
        return {
            "rehearsal_of": args["engine"],
            "trials": args["trials"],
            "sha256": args["sha256"],
            "seed": args["seed"],
            "duplicates": args["duplicates"],
            "batch_noise_cv": args["batch_noise_cv"],
            "load_seconds": self.load_seconds,
            "load_seconds_from": self.load_source,
        }
