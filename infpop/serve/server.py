"""Each engine's OpenAI-compatible server, as a context manager: started in a process group of its
own on a free port, waited for (GET /health until it answers 200, within a deadline, while the
process is watched: a server that exits is a failure at once, not at the deadline), and stopped
with its whole process group (vLLM's engine core and workers are children of the API server).

- vLLM: `python -m vllm.entrypoints.openai.api_server --model FOLDER --dtype D
  --tensor-parallel-size N <engine arguments as flags>`, with VLLM_SERVER_DEV_MODE=1 for
  /server_info (the settings it runs with, read back) and /reset_prefix_cache (a clean cache
  before each load point);
- hf: `transformers serve FOLDER --continuous-batching --device D --dtype D <options>` (its CLI
  module run with this Python): requests are batched as they arrive; without continuous batching
  it generates one request at a time.

A server that does not become healthy, or that dies under load, is a `ServerFailed` whose status
is the engine's own classification of what the server printed (infpop/measure/engines: `oom`,
`unsupported`, else `error`; `timeout` past the deadline).

vLLM's `vllm/benchmarks/sweep/server.py` was read as a model (a session of its own, /health every
second, the process group killed); nothing of it is copied.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from infpop.measure.crosscheck import engine_flags
from infpop.measure.engines import load_engine_class
from infpop.serve import steps
from infpop.serve.steps import StepCounts

logger = logging.getLogger(__name__)

#: How often /health is asked while a server starts.
POLL_S = 1.0
#: How long a server may take to stop after SIGTERM before its group is killed.
STOP_GRACE_S = 15.0


class ServerFailed(RuntimeError):
    """A server that did not start or died: the status (as a trial's: oom, unsupported, error,
    crashed, timeout) and why."""

    def __init__(self, status: str, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


def free_port() -> int:
    """A TCP port no one listens on now (the server binds it a moment later)."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def vllm_command(model_path: str, dtype: str, n_gpus: int, arguments: dict, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        model_path,
        "--dtype",
        dtype,
        "--tensor-parallel-size",
        str(n_gpus),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *engine_flags(arguments),
    ]


def hf_command(model_path: str, dtype: str, device: str, arguments: dict, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "transformers.cli.transformers",
        "serve",
        model_path,
        "--continuous-batching",
        "--device",
        device,
        "--dtype",
        dtype,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *engine_flags(arguments),
    ]


def server_command(engine: str, model_path: str, dtype: str, device: str, n_gpus: int, arguments: dict, port: int):
    """The command that starts `engine`'s server with its arguments, on `port`."""
    if engine == "vllm":
        return vllm_command(model_path, dtype, n_gpus, arguments, port)
    if engine == "hf":
        return hf_command(model_path, dtype, device, arguments, port)
    raise ValueError(f"no server for engine '{engine}'")


def get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """(status, body) of a GET; (0, b'') when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - our own local server
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


def post(url: str, timeout: float = 10.0) -> int:
    request = urllib.request.Request(url, data=b"", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - our own local server
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return 0


class Server:
    """One server process (group) and its log. `start()` returns once it is healthy, or raises
    ServerFailed; `stop()` ends the whole group. `watch` is called while it starts (the Snakemake
    watch: it raises when the run that started this job is gone)."""

    def __init__(
        self,
        engine: str,
        command: list[str],
        environment: dict,
        port: int,
        log_path: Path,
        start_timeout_s: float,
        watch: Callable[[], None] = lambda: None,
    ):
        self.engine, self.command, self.environment, self.port = engine, command, environment, port
        self.log_path, self.start_timeout_s, self.watch = Path(log_path), start_timeout_s, watch
        self.process: subprocess.Popen | None = None
        self.start_seconds: float | None = None
        self.log_offset = 0  # where this server's part of the log starts (the log is appended)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Server:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        started = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.environment,
                start_new_session=True,  # own process group: stopped whole
            )
        logger.info(f"{self.engine} server pid {self.process.pid} on port {self.port}: {' '.join(self.command[1:])}")
        try:
            self._wait_healthy(started)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - started
        return self

    def _wait_healthy(self, started: float) -> None:
        deadline = started + self.start_timeout_s
        while True:
            self.watch()
            if self.process.poll() is not None:
                raise self.failure(f"the server exited ({self.exit_description()}) before it was healthy")
            status, _ = get(f"{self.base_url}/health", timeout=POLL_S * 5)
            if status == 200:
                return
            if time.monotonic() >= deadline:
                failure = self.failure(f"not healthy after {self.start_timeout_s:g} s")
                status = "timeout" if failure.status == "error" else failure.status
                raise ServerFailed(status, failure.reason)
            time.sleep(POLL_S)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def healthy(self) -> bool:
        return self.alive() and get(f"{self.base_url}/health")[0] == 200

    def exit_description(self) -> str:
        code = self.process.poll() if self.process is not None else None
        if code is None:
            return "still running"
        if code < 0:
            return f"killed by signal {signal.Signals(-code).name}"
        return f"exit code {code}"

    def printed(self) -> list[str]:
        """What this server printed, line by line."""
        try:
            with open(self.log_path, "rb") as handle:
                handle.seek(self.log_offset)
                return handle.read().decode(errors="replace").splitlines()
        except OSError:
            return []

    def failure(self, what: str) -> ServerFailed:
        """A ServerFailed for `what` happened, classified by the engine from what the server
        printed: its first error line that says out of memory or unsupported; else `error`, with
        the last error line printed."""
        engine = load_engine_class(self.engine)
        printed = self.printed()
        status, cause = engine.classify_failure(RuntimeError(what), printed)
        if cause is None:
            errors = [line.strip() for line in printed if "error" in line.lower()]
            cause = errors[-1][:1000] if errors else None
        return ServerFailed(status, what + (f": {cause}" if cause else f"; see {self.log_path}"))

    def settings(self) -> dict | None:
        """The settings a vLLM server runs with, read back from its /server_info (None where the
        server cannot say: transformers' has no such endpoint)."""
        if self.engine != "vllm":
            return None
        status, body = get(f"{self.base_url}/server_info?config_format=json", timeout=30)
        if status != 200:
            return None
        config = json.loads(body).get("vllm_config") or {}
        cache, scheduler = config.get("cache_config") or {}, config.get("scheduler_config") or {}
        model, parallel = config.get("model_config") or {}, config.get("parallel_config") or {}
        blocks = cache.get("num_gpu_blocks")
        return {
            "enable_prefix_caching": cache.get("enable_prefix_caching"),
            "enable_chunked_prefill": scheduler.get("enable_chunked_prefill"),
            "max_num_seqs": scheduler.get("max_num_seqs"),
            "max_num_batched_tokens": scheduler.get("max_num_batched_tokens"),
            "block_size": cache.get("block_size"),
            "kv_cache_dtype": cache.get("cache_dtype"),
            "kv_cache_tokens": blocks * cache["block_size"] if blocks and cache.get("block_size") else None,
            "gpu_memory_utilization": cache.get("gpu_memory_utilization"),
            "tensor_parallel_size": parallel.get("tensor_parallel_size"),
            "dtype": str(model.get("dtype")).removeprefix("torch."),
            "max_model_len": model.get("max_model_len"),
            "enforce_eager": model.get("enforce_eager"),
        }

    def step_counts(self) -> StepCounts | None:
        """vLLM's scheduler steps so far, from its /metrics (steps.py); None where the server has
        none (transformers' server)."""
        if self.engine != "vllm":
            return None
        status, body = get(f"{self.base_url}/metrics", timeout=30)
        return steps.parse(body.decode(errors="replace")) if status == 200 else None

    def reset_prefix_cache(self) -> bool:
        """Empty vLLM's prefix cache (dev mode), so that a load point does not reuse the last's."""
        return self.engine == "vllm" and post(f"{self.base_url}/reset_prefix_cache") == 200

    def stop(self) -> None:
        """SIGTERM to the group, then SIGKILL to whatever is left of it after a grace period."""
        process = self.process
        if process is None:
            return
        for sent, wait in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, 30.0)):
            try:
                os.killpg(process.pid, sent)
            except ProcessLookupError:
                break
            try:
                process.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
            if not _group_alive(process.pid):
                break
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # children that outlived the leader

    def kill(self) -> None:
        """SIGKILL to the group at once (a run that is gone does not wait)."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
