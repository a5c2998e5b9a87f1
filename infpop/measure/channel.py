"""The channel between a sweep's supervisor (sweep.py) and its worker process (worker.py).

Both ends speak it: commands go to the worker, events come back, one JSON object a line, each
tagged as today's wire has it (`"cmd": "trial"`, `"event": "batch"`). Every message is a small
frozen dataclass with exactly the fields that travel; `encode` and `decode_command` /
`decode_event` turn one into a line and back. WorkerProcess runs `python -m infpop.measure.worker`
in its own process group and waits for each answer with a deadline: a worker that is gone raises
WorkerGone, one that does not answer in time WorkerTimeout.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import ClassVar


class WorkerGone(Exception):
    """The worker process exited or closed its event channel."""


class WorkerTimeout(Exception):
    """No answer from the worker before the deadline."""


class ProtocolError(ValueError):
    """A line on the channel that is not a message of the kind expected."""


# -- commands: supervisor -> worker ---------------------------------------------------------------
class Command:
    """A command to the worker; `tag` is its `cmd` on the wire."""

    tag: ClassVar[str]


@dataclass(frozen=True)
class Load(Command):
    """Load the model (once per worker) and keep the benchmark's prompts for the trials."""

    tag: ClassVar[str] = "load"
    engine: str
    hardware: str
    environment: str | None  # the hardware's conda environment (for the device check's advice)
    model_path: str
    n_gpus: int
    dtype: str
    device: str  # "cuda" or "cpu"
    engine_args: dict
    prompts: list[str]
    offload: str = "forbid"  # hf_offload


@dataclass(frozen=True)
class Warmup(Command):
    """Untimed batches before the first trial."""

    tag: ClassVar[str] = "warmup"
    batches: int
    batch_size: int
    max_new_tokens: int


@dataclass(frozen=True)
class Trial(Command):
    """Generate for every prompt, `batch_size` at a time, timing each batch (or, sequential, a
    stratified sample of the batches)."""

    tag: ClassVar[str] = "trial"
    max_new_tokens: int
    batch_size: int
    call: str = "engine"  # "engine": the engine's own call; "bare": the hf cross-check's model.generate
    fault: dict | None = None  # test hook: {"kind": "crash"|"hang"|"oom"|"engine_dead", "after_batches": n}
    rep: int = 0  # the repetition (an engine answering from a record looks the trial up by it)
    #: budget.sequential's settings and the trial's seed (infpop.measure.sequential): time a
    #: stratified sample of the batches until the throughput's interval is narrow enough; None: all
    sequential: dict | None = None


@dataclass(frozen=True)
class Exit(Command):
    """Free the engine and exit."""

    tag: ClassVar[str] = "exit"


# -- events: worker -> supervisor -----------------------------------------------------------------
class Event:
    """An event from the worker; `tag` is its `event` on the wire."""

    tag: ClassVar[str]


@dataclass(frozen=True)
class Loaded(Event):
    tag: ClassVar[str] = "loaded"
    load_seconds: float
    engine_settings: dict  # what the engine runs with (its effective settings)
    environment: dict  # the host, devices and library versions


@dataclass(frozen=True)
class LoadFailed(Event):
    """The model did not load: a result, recorded for every trial of the sweep."""

    tag: ClassVar[str] = "load_failed"
    status: str
    error: str
    engine_settings: dict | None = None  # what the load would have run with, where the engine says


@dataclass(frozen=True)
class SetupFailed(Event):
    """The sweep cannot run here at all (too few GPUs, a GPU without kernels): no trial is recorded."""

    tag: ClassVar[str] = "setup_failed"
    error: str


@dataclass(frozen=True)
class Warmed(Event):
    tag: ClassVar[str] = "warmed"
    seconds: float
    error: str | None  # a failed warm-up is reported, not fatal


@dataclass(frozen=True)
class Batch(Event):
    """One batch of a trial done (`index`: its position among the trial's batches)."""

    tag: ClassVar[str] = "batch"
    index: int
    latency_s: float
    new_tokens: int
    prompt_tokens: int
    cached_prompt_tokens: int | None  # prompt tokens found in the engine's prefix cache (None: hf)
    output_digests: list[str]  # one per prompt (records.output_digest)
    peak_memory_bytes: int | None  # the trial's peak so far (None: a simulated engine has no memory to read)


@dataclass(frozen=True)
class TrialEnd(Event):
    """A trial over: how it ended, after the batches it completed."""

    tag: ClassVar[str] = "trial_end"
    status: str
    error: str | None
    peak_memory_bytes: int | None
    peak_memory_kind: str | None
    usable: bool = True  # False: the engine is dead (vLLM's EngineDeadError) and the worker must go
    energy: dict | None = None
    #: the trial's wall time, from the start of its first batch to its end (the failed batch
    #: included); on a simulated engine's virtual clock
    wall_seconds: float | None = None
    #: a sequential trial's record block (infpop.measure.sequential.summary); None for a full one
    sequential: dict | None = None


COMMANDS: dict[str, type[Command]] = {c.tag: c for c in (Load, Warmup, Trial, Exit)}
EVENTS: dict[str, type[Event]] = {e.tag: e for e in (Loaded, LoadFailed, SetupFailed, Warmed, Batch, TrialEnd)}


def encode(message: Command | Event) -> str:
    """One JSON line (without its line break): the tag first, then the fields."""
    key = "cmd" if isinstance(message, Command) else "event"
    return json.dumps({key: message.tag, **{f.name: getattr(message, f.name) for f in fields(message)}})


def _decode(line: str | bytes, key: str, types: dict) -> Command | Event:
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ProtocolError(f"not a JSON line on the worker channel ({exc.msg}): {line[:200]!r}") from None
    if not isinstance(data, dict) or key not in data:
        raise ProtocolError(f"a message without its {key!r} on the worker channel: {line[:200]!r}")
    tag = data.pop(key)
    if tag not in types:
        raise ProtocolError(f"unknown {key} {tag!r} on the worker channel (known: {', '.join(types)})")
    try:
        return types[tag](**data)
    except TypeError as exc:
        raise ProtocolError(f"{key} {tag!r} with the wrong fields: {exc}") from None


def decode_command(line: str | bytes) -> Command:
    """The command a line carries; ProtocolError if it is none."""
    return _decode(line, "cmd", COMMANDS)


def decode_event(line: str | bytes) -> Event:
    """The event a line carries; ProtocolError if it is none."""
    return _decode(line, "event", EVENTS)


class WorkerProcess:
    """A running infpop.measure.worker with deadlines on every answer. As a context manager it
    stops the worker on leaving (kills it, after an exception), never leaving it (and the devices
    it holds) behind.

    `check` is called about once a second while an answer is awaited; it raises to stop waiting
    (the supervisor's: the Snakemake run that started it is gone)."""

    def __init__(self, env: dict, stderr=None, check: Callable[[], None] | None = None):
        self.check = check
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "infpop.measure.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=env,
            start_new_session=True,  # own process group: kill it whole
        )
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.proc.stdout, selectors.EVENT_READ)
        self.buffer = b""

    def __enter__(self) -> WorkerProcess:
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is None:
            self.stop()
        else:
            self.kill()

    def send(self, command: Command) -> None:
        try:
            self.proc.stdin.write((encode(command) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise WorkerGone() from None

    def receive(self, deadline: float, *expected: type[Event]) -> Event:
        """The next event, by `deadline` (time.monotonic()) or WorkerTimeout; ProtocolError if it
        is not of an `expected` type (where any are given)."""
        while b"\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WorkerTimeout()
            if self.check is not None:
                self.check()
            if not self.selector.select(timeout=min(remaining, 1.0)):
                continue
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                raise WorkerGone()
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        event = decode_event(line)
        if expected and not isinstance(event, expected):
            wanted = " or ".join(e.tag for e in expected)
            raise ProtocolError(f"the worker answered {event.tag!r} where {wanted} was expected")
        return event

    def exit_description(self) -> str:
        try:
            code = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            return "the worker closed its channel but did not exit"
        if code < 0:
            return f"the worker was killed by signal {signal.Signals(-code).name}"
        return f"the worker exited with code {code}"

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self.selector.close()

    def stop(self, timeout: float = 60) -> None:
        try:
            self.send(Exit())
            self.proc.wait(timeout=timeout)
        except (WorkerGone, subprocess.TimeoutExpired):
            pass
        self.kill()  # the engine's own children (vLLM) go with the group
