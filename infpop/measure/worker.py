"""The worker process of a sweep: holds one engine and runs trials on the supervisor's command.

Run as `python -m infpop.measure.worker`. Commands (infpop.measure.channel) arrive as JSON lines on
stdin; events go back as JSON lines on the process's original stdout, which is reserved for them:
everything the libraries print is sent to stderr instead. Running in its own process (and process group) lets the
supervisor survive a crash or a hang here and kill the engine's own children with it.

The worker's stderr (and so that of every process its engine starts) passes through OutputTail on
its way to the job log, which keeps the last lines: a failure is classified by what the engine's
processes printed too, where vLLM's engine core reports the real cause of a failed load.
"""

from __future__ import annotations

import collections
import os
import re
import signal
import sys
import threading
import time
import traceback

from infpop.measure import device_check, environment, records, sequential
from infpop.measure.channel import (
    Batch,
    Exit,
    Load,
    Loaded,
    LoadFailed,
    SetupFailed,
    Trial,
    TrialEnd,
    Warmed,
    Warmup,
    decode_command,
    encode,
)
from infpop.measure.energy import EnergyMeter
from infpop.measure.engines import EngineSpec, load_engine_class

#: Why a simulated trial (the rehearsal) has no energy reading.
SIMULATED_ENERGY_REASON = "simulated trial (a rehearsal): no device ran, no energy counter was read"


class MemoryProbe:
    """Peak memory of a trial: torch's allocator on CUDA for engines in this process (hf), the
    devices' used memory for engines in child processes (vllm), the RSS of this process tree on
    the CPU; none for a simulated engine (nothing ran that held memory)."""

    def __init__(self, device: str, in_process: bool, simulated: bool = False):
        self.device, self.in_process, self.simulated = device, in_process, simulated
        self.peak = 0

    @property
    def kind(self) -> str | None:
        if self.simulated:
            return None
        if self.device != "cuda":
            return "rss"
        return "cuda_max_allocated" if self.in_process else "cuda_device_used"

    def reset(self) -> None:
        self.peak = 0
        if self.kind == "cuda_max_allocated":
            import torch

            for i in range(torch.cuda.device_count()):
                torch.cuda.reset_peak_memory_stats(i)

    def sample(self) -> int | None:
        if self.simulated:
            return None
        if self.kind == "cuda_max_allocated":
            import torch

            now = sum(torch.cuda.max_memory_allocated(i) for i in range(torch.cuda.device_count()))
        elif self.kind == "cuda_device_used":
            import torch

            now = 0
            for i in range(torch.cuda.device_count()):
                free, total = torch.cuda.mem_get_info(i)
                now += total - free
        else:
            import psutil

            me = psutil.Process()
            now = me.memory_info().rss
            for child in me.children(recursive=True):
                try:
                    now += child.memory_info().rss
                except psutil.Error:
                    pass
        self.peak = max(self.peak, now)
        return self.peak


class OutputTail:
    """Routes this process's fd 2 through a pipe. A thread copies every byte on to the original
    stderr (the job log: nothing is held back or dropped) and keeps the last `max_lines` lines, so
    a failure can be classified by what the engine's processes printed: they inherit fd 2, and
    vLLM's engine core prints the cause (a KV cache that does not fit, a CUDA OOM) of a failure
    the frontend only reports as "Engine core initialization failed".

    A thread rather than a process: it shares the lines with the worker directly. It needs the
    GIL, which a hang in native code would hold; the supervisor's time limits cover that case."""

    #: Written by `sync` and removed from the copy: once the thread has seen it, everything
    #: written to the pipe before it (by any process) has been read.
    SYNC = b"\x00infpop-output-sync\x00"
    #: A run without line breaks (a progress bar redrawn with carriage returns) is cut into lines
    #: of this many characters for the memory (the copy is unchanged).
    MAX_LINE = 65536

    def __init__(self, max_lines: int = 400):
        self.lines: collections.deque[str] = collections.deque(maxlen=max_lines)
        self.count = 0  # complete lines seen so far
        self.partial = ""
        self.syncs_sent = self.syncs_seen = 0
        self.condition = threading.Condition()
        sys.stderr.flush()
        self.original = os.dup(2)  # the job log
        read, write = os.pipe()
        os.dup2(write, 2)
        os.close(write)
        self.read_fd = read
        threading.Thread(target=self._pump, name="infpop-output-tail", daemon=True).start()

    def _pump(self) -> None:
        pending = b""
        while True:
            try:
                chunk = os.read(self.read_fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            data = pending + chunk
            syncs = data.count(self.SYNC)
            data = data.replace(self.SYNC, b"")
            # Hold back a tail that may be the start of a sync marker split between two reads.
            keep = next(
                (k for k in range(min(len(self.SYNC) - 1, len(data)), 0, -1) if data.endswith(self.SYNC[:k])), 0
            )
            data, pending = (data[:-keep], data[-keep:]) if keep else (data, b"")
            self._copy(data)
            with self.condition:
                self._remember(data.decode("utf-8", errors="replace"))
                self.syncs_seen += syncs
                self.condition.notify_all()

    def _copy(self, data: bytes) -> None:
        while data:
            try:
                written = os.write(self.original, data)
            except InterruptedError:
                continue
            except OSError:  # the log is gone: keep reading, so no writer ever blocks on the pipe
                return
            data = data[written:]

    def _remember(self, text: str) -> None:
        parts = re.split(r"\r\n|\r|\n", self.partial + text)
        self.partial = parts.pop()
        while len(self.partial) > self.MAX_LINE:
            parts.append(self.partial[: self.MAX_LINE])
            self.partial = self.partial[self.MAX_LINE :]
        self.lines.extend(parts)
        self.count += len(parts)

    def mark(self) -> int:
        """A point in the output; `since(mark)` gives what was printed after it."""
        with self.condition:
            return self.count

    def since(self, mark: int) -> list[str]:
        """The lines printed since `mark` that are still kept (the last max_lines), oldest first,
        with an unfinished last line."""
        self.sync()
        with self.condition:
            kept = list(self.lines)
            first_kept = self.count - len(kept)
            lines = kept[max(0, mark - first_kept) :]
            return lines + ([self.partial] if self.partial else [])

    def sync(self, timeout: float = 5.0) -> bool:
        """Wait until everything written to fd 2 so far has been copied and remembered."""
        sys.stderr.flush()
        with self.condition:
            self.syncs_sent += 1
            target = self.syncs_sent
        try:
            os.write(2, self.SYNC)  # one write below PIPE_BUF: never interleaved with another
        except OSError:
            return False
        with self.condition:
            return self.condition.wait_for(lambda: self.syncs_seen >= target, timeout)


def _inject(fault: dict | None, batch_index: int, engine=None) -> None:
    """Test hook: a fault the supervisor asked for (tests of crash, hang, OOM and dead-engine
    handling)."""
    if not fault or fault.get("after_batches", 0) != batch_index:
        return
    kind = fault["kind"]
    if kind == "crash":
        os.kill(os.getpid(), signal.SIGKILL)
    elif kind == "hang":
        while True:
            time.sleep(3600)
    elif kind == "oom":
        import torch

        raise torch.OutOfMemoryError("CUDA out of memory (injected by the test harness)")
    elif kind == "engine_dead":
        # What vLLM raises once its engine core has died (the error is unrecoverable): vLLM's own
        # exception where it is installed. The engine then stays dead, as vLLM's does.
        try:
            from vllm.v1.engine.exceptions import EngineDeadError as dead
        except ImportError:
            dead = RuntimeError

        def generate(*args, **kwargs):
            raise dead("the engine died earlier (injected by the test harness)")

        engine.generate = engine.generate_bare = generate
        raise dead("the engine died (injected by the test harness)")
    raise ValueError(f"unknown fault kind {kind!r}")


def _failure(engine_class, exc: BaseException, printed: list[str]) -> tuple[str, str]:
    """(status, error text) of a failed load or trial. The error text starts with the line that
    decided the status (where the engine's processes printed it: vLLM's engine core), so the
    record and the log name the real cause, not only the frontend's "Engine core initialization
    failed" or a wrapper's first line."""
    status, cause = engine_class.classify_failure(exc, printed)
    text = _error_text(exc)
    if cause and cause not in text:
        text = f"{cause}\n(printed by the engine's processes; the engine raised:)\n{text}"
    elif cause and not text.startswith(cause):  # deep in a wrapped exception (pydantic's): first
        text = f"{cause}\n{text}"
    return status, text


class Worker:
    """Runs the commands of one worker process; `send` takes its events (channel.Event)."""

    def __init__(self, send, output: OutputTail | None = None):
        self.send = send
        self.output = output  # what the engine's processes print (None: not captured)
        self.engine = None
        self.probe = None

    def _mark(self) -> int:
        return self.output.mark() if self.output else 0

    def _printed(self, mark: int) -> list[str]:
        return self.output.since(mark) if self.output else []

    def load(self, msg: Load) -> None:
        spec = EngineSpec(msg.model_path, msg.n_gpus, msg.dtype, msg.device, msg.engine_args, offload=msg.offload)
        engine_class = load_engine_class(msg.engine)
        if spec.device == "cuda":
            import torch

            seen = torch.cuda.device_count()
            if seen < spec.n_gpus:
                self.send(
                    SetupFailed(
                        f"hardware '{msg.hardware}' needs {spec.n_gpus} GPU(s) but this worker sees {seen} "
                        f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r})"
                    )
                )
                return
            # a GPU that torch counts but has no kernels for would fail every trial: stop the sweep
            problem = device_check.check_visible_devices(msg.hardware, msg.environment)
            if problem:
                self.send(SetupFailed(f"hardware '{msg.hardware}': {problem}"))
                return
        started = time.perf_counter()
        mark = self._mark()
        try:
            engine = engine_class(spec)
            simulated_seconds = engine.load()
        except Exception as exc:  # a model that does not fit or does not load is a result
            status, error = _failure(engine_class, exc, self._printed(mark))
            # what the engine would have run with, where it says (an hf placement refused)
            self.send(LoadFailed(status, error, engine_settings=getattr(exc, "settings", None)))
            return
        load_seconds = _seconds(started, simulated_seconds)
        self.engine = engine
        self.prompts = msg.prompts  # the benchmark, sent once; trials take their batches from it
        simulated = engine_class.simulated
        self.probe = MemoryProbe(spec.device, in_process=engine_class.in_process, simulated=simulated)
        # the GPUs' energy counters, or why there are none
        self.energy = EnergyMeter(reason=SIMULATED_ENERGY_REASON) if simulated else EnergyMeter.open(spec.device)
        self.send(
            Loaded(
                load_seconds=load_seconds,
                engine_settings=engine.effective_settings(),
                # a simulated engine used no accelerator: none is looked for (nor torch imported)
                environment=environment.collect(engine_class.library_versions(), accelerators=not simulated),
            )
        )

    def warmup(self, msg: Warmup) -> None:
        started = time.perf_counter()
        prompts, size = self.prompts, msg.batch_size
        error, simulated = None, None
        for i in range(msg.batches):
            batch = prompts[(i * size) % len(prompts) :][:size] or prompts[:size]
            try:
                result = self.engine.generate(batch, msg.max_new_tokens)
            except Exception as exc:  # an untimed warm-up that fails is reported, not fatal
                error = _error_text(exc)
                break
            if result.simulated_seconds is not None:
                simulated = (simulated or 0.0) + result.simulated_seconds
        self.send(Warmed(seconds=_seconds(started, simulated), error=error))

    def trial(self, msg: Trial) -> None:
        prompts, batch_size, tokens = self.prompts, msg.batch_size, msg.max_new_tokens
        batches = [prompts[i : i + batch_size] for i in range(0, len(prompts), batch_size)]
        # "engine": the engine's own call (the measurement); "bare": the hf cross-check's plain
        # model.generate on the same batches
        generate = self.engine.generate_bare if msg.call == "bare" else self.engine.generate
        self.engine.begin_trial(tokens, batch_size, msg.rep, [len(batch) for batch in batches])
        sample = None  # a sequential trial: its order of batches and its stopping rule
        if msg.sequential:
            settings = {k: v for k, v in msg.sequential.items() if k != "trial_seed"}
            sample = sequential.SequentialTrial(
                sequential.Settings(**settings), len(batches), msg.sequential["trial_seed"]
            )
        stopped = None
        self.probe.reset()
        status, error, usable = "ok", None, True
        mark = self._mark()
        generated = 0
        simulated = 0.0 if type(self.engine).simulated else None  # the trial's time on a virtual clock
        self.energy.start()  # right before the first batch: the window is the trial's own
        trial_started = time.perf_counter()
        for count, index in enumerate(sample.order if sample else range(len(batches))):
            batch = batches[index]
            try:
                _inject(msg.fault, count, self.engine)
                self.engine.begin_batch(index)
                started = time.perf_counter()
                result = generate(batch, tokens)
                latency = _seconds(started, result.simulated_seconds)
            except Exception as exc:
                status, error = _failure(type(self.engine), exc, self._printed(mark))
                # An engine that died (vLLM's EngineDeadError, also when its cause was an OOM)
                # cannot run the next trial: the supervisor replaces this worker.
                usable = not type(self.engine).leaves_engine_unusable(exc)
                if simulated is not None:  # what the failed batch took before it failed, if it says
                    simulated += getattr(exc, "simulated_seconds", None) or 0.0
                break
            if simulated is not None:
                simulated += latency
            generated += result.new_tokens
            self.send(
                Batch(
                    index=index,
                    latency_s=latency,
                    new_tokens=result.new_tokens,
                    prompt_tokens=result.prompt_tokens,
                    cached_prompt_tokens=result.cached_prompt_tokens,
                    output_digests=[records.output_digest(ids) for ids in result.new_token_ids],
                    peak_memory_bytes=self.probe.sample(),
                )
            )
            if sample and (stopped := sample.add(index, result.new_tokens, latency)):
                break
        wall = _seconds(trial_started, simulated)
        energy = self.energy.stop(generated)
        peak = self.probe.sample()  # before an OOM's memory is released: the peak includes it
        if status == "oom" and usable:
            self.engine.recover_from_oom()
        self.send(
            TrialEnd(
                status=status,
                error=error,
                peak_memory_bytes=peak,
                peak_memory_kind=self.probe.kind,
                usable=usable,
                energy=energy,
                wall_seconds=wall,
                sequential=sample.summary((stopped or sequential.ALL_BATCHES) if status == "ok" else status)
                if sample
                else None,
            )
        )


def _seconds(started: float, simulated: float | None) -> float:
    """How long something took: the simulated seconds where the engine gives them (one that
    answers from a record, on its virtual clock), else the worker's clock since `started`."""
    return simulated if simulated is not None else time.perf_counter() - started


def _error_text(exc: BaseException) -> str:
    text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    tail = "".join(traceback.format_tb(exc.__traceback__)[-3:])
    return (text + "\n" + tail)[-4000:]


def main() -> None:
    events = os.fdopen(os.dup(1), "w", buffering=1)
    output = OutputTail()  # fd 2 now passes through it (and so does fd 1, next)
    os.dup2(2, 1)  # library output goes to stderr; stdout carries events only
    sys.stdout = sys.stderr

    def send(event) -> None:
        events.write(encode(event) + "\n")
        events.flush()

    worker = Worker(send, output)
    run = {Load: worker.load, Warmup: worker.warmup, Trial: worker.trial}
    for line in sys.stdin:
        command = decode_command(line)
        if isinstance(command, Exit):
            break
        run[type(command)](command)
    if worker.engine is not None:
        worker.engine.free()
    events.close()
    output.sync()  # the last lines reach the log before the exit
    # vLLM's engine processes can keep the interpreter alive on exit; the supervisor waits for us.
    os._exit(0)


if __name__ == "__main__":
    main()
