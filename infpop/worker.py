"""The worker process of a sweep: holds one engine and runs trials on the supervisor's command.

Run as `python -m infpop.worker`. Commands arrive as JSON lines on stdin; events go back as JSON
lines on the process's original stdout, which is reserved for them: everything the libraries
print is sent to stderr instead. Running in its own process (and process group) lets the
supervisor survive a crash or a hang here and kill the engine's own children with it.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import time
import traceback

from infpop import device_check, environment
from infpop.engines import EngineSpec, load_engine_class


class MemoryProbe:
    """Peak memory of a trial: torch's allocator on CUDA for engines in this process (hf), the
    devices' used memory for engines in child processes (vllm), the RSS of this process tree on
    the CPU."""

    def __init__(self, device: str, in_process: bool):
        self.device, self.in_process = device, in_process
        self.peak = 0

    @property
    def kind(self) -> str:
        if self.device != "cuda":
            return "rss"
        return "cuda_max_allocated" if self.in_process else "cuda_device_used"

    def reset(self) -> None:
        self.peak = 0
        if self.kind == "cuda_max_allocated":
            import torch

            for i in range(torch.cuda.device_count()):
                torch.cuda.reset_peak_memory_stats(i)

    def sample(self) -> int:
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


def _inject(fault: dict | None, batch_index: int) -> None:
    """Test hook: a fault the supervisor asked for (tests of crash, hang and OOM handling)."""
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
    raise ValueError(f"unknown fault kind {kind!r}")


class Worker:
    def __init__(self, send):
        self.send = send
        self.engine = None
        self.probe = None

    def load(self, msg: dict) -> None:
        spec = EngineSpec(msg["model_path"], msg["n_gpus"], msg["dtype"], msg["device"], msg["engine_args"])
        engine_class = load_engine_class(msg["engine"])
        if spec.device == "cuda":
            import torch

            seen = torch.cuda.device_count()
            if seen < spec.n_gpus:
                self.send({"event": "setup_failed", "error": (
                    f"hardware '{msg['hardware']}' needs {spec.n_gpus} GPU(s) but this worker sees {seen} "
                    f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r})")})
                return
            # a GPU that torch counts but has no kernels for would fail every trial: stop the sweep
            problem = device_check.check_visible_devices(msg["hardware"], msg.get("environment"))
            if problem:
                self.send({"event": "setup_failed", "error": f"hardware '{msg['hardware']}': {problem}"})
                return
        started = time.perf_counter()
        try:
            engine = engine_class(spec)
            engine.load()
        except Exception as exc:  # a model that does not fit or does not load is a result
            status = "oom" if engine_class.is_out_of_memory(exc) else "error"
            self.send({"event": "load_failed", "status": status, "error": _error_text(exc)})
            return
        load_seconds = time.perf_counter() - started
        self.engine = engine
        self.prompts = msg["prompts"]  # the benchmark, sent once; trials take their batches from it
        self.probe = MemoryProbe(spec.device, in_process=engine_class.in_process)
        self.send({"event": "loaded", "load_seconds": load_seconds, "engine_settings": engine.effective_settings(),
                   "environment": environment.collect(engine_class.library_versions())})

    def warmup(self, msg: dict) -> None:
        started = time.perf_counter()
        prompts = self.prompts
        error = None
        for i in range(msg["batches"]):
            batch = prompts[(i * msg["batch_size"]) % len(prompts):][: msg["batch_size"]] or prompts[: msg["batch_size"]]
            try:
                self.engine.generate(batch, msg["max_new_tokens"])
            except Exception as exc:  # an untimed warm-up that fails is reported, not fatal
                error = _error_text(exc)
                break
        self.send({"event": "warmed", "seconds": time.perf_counter() - started, "error": error})

    def trial(self, msg: dict) -> None:
        prompts, batch_size, tokens = self.prompts, msg["batch_size"], msg["max_new_tokens"]
        batches = [prompts[i: i + batch_size] for i in range(0, len(prompts), batch_size)]
        # "engine": the engine's own call (the measurement); "bare": the hf cross-check's plain
        # model.generate on the same batches
        generate = self.engine.generate_bare if msg.get("call") == "bare" else self.engine.generate
        self.probe.reset()
        counters_before = self.engine.counters()
        status, error = "ok", None
        for index, batch in enumerate(batches):
            try:
                _inject(msg.get("fault"), index)
                started = time.perf_counter()
                result = generate(batch, tokens)
                latency = time.perf_counter() - started
            except Exception as exc:
                status = "oom" if self.engine.is_out_of_memory(exc) else "error"
                error = _error_text(exc)
                break
            self.send({"event": "batch", "index": index, "latency_s": latency,
                       "new_tokens": result.new_tokens, "prompt_tokens": result.prompt_tokens,
                       "output_digests": [output_digest(ids) for ids in result.new_token_ids],
                       "peak_memory_bytes": self.probe.sample()})
        peak = self.probe.sample()  # before an OOM's memory is released: the peak includes it
        if status == "oom":
            self.engine.recover_from_oom()
        counters = {name: value - counters_before.get(name, 0) for name, value in self.engine.counters().items()}
        self.send({"event": "trial_end", "status": status, "error": error, "engine_counters": counters,
                   "peak_memory_bytes": peak, "peak_memory_kind": self.probe.kind})


def output_digest(token_ids: list[int]) -> str:
    """A short fingerprint of one prompt's generated token ids: two outputs are equal exactly
    when their digests are (12 hex digits: a collision between two outputs of one prompt is
    out of reach), so output agreement is checked without storing every token."""
    data = b"".join(int(t).to_bytes(4, "little", signed=True) for t in token_ids)
    return hashlib.blake2b(data, digest_size=6).hexdigest()


def _error_text(exc: BaseException) -> str:
    text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    tail = "".join(traceback.format_tb(exc.__traceback__)[-3:])
    return (text + "\n" + tail)[-4000:]


def main() -> None:
    channel = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # library output goes to stderr; stdout carries events only
    sys.stdout = sys.stderr

    def send(event: dict) -> None:
        channel.write(json.dumps(event) + "\n")
        channel.flush()

    worker = Worker(send)
    for line in sys.stdin:
        msg = json.loads(line)
        if msg["cmd"] == "exit":
            break
        getattr(worker, msg["cmd"])(msg)
    if worker.engine is not None:
        worker.engine.free()
    channel.close()
    # vLLM's engine processes can keep the interpreter alive on exit; the supervisor waits for us.
    os._exit(0)


if __name__ == "__main__":
    main()
