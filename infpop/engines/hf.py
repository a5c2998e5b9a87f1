"""HuggingFace transformers text-generation pipeline, as the paper ran it.

The model is loaded with device_map="auto" (accelerate spreads it over the visible devices; the
worker limits CUDA_VISIBLE_DEVICES to n_gpus before torch starts) and each batch is one pipeline
call with the pipeline's batch_size set to the batch's size.
"""

from __future__ import annotations

import copy
import warnings

from infpop.engines.base import Engine as BaseEngine
from infpop.engines.base import GenerationResult


class Engine(BaseEngine):
    name = "hf"

    def load(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

        dtype = "auto" if self.spec.dtype == "auto" else getattr(torch, self.spec.dtype)
        tokenizer = AutoTokenizer.from_pretrained(self.spec.model_source)
        # Decoder-only models generate after the prompt: pad on the left, and give models
        # without a pad token their end-of-sequence token as padding (what batching needs).
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model = AutoModelForCausalLM.from_pretrained(
            self.spec.model_source, device_map="auto", dtype=dtype, **self.spec.engine_args
        )
        model.eval()
        self.tokenizer = tokenizer
        self.generation_config = copy.deepcopy(model.generation_config)
        self.pipe = pipeline("text-generation", model=model, tokenizer=tokenizer)

    def generate(self, prompts: list[str], max_new_tokens: int) -> GenerationResult:
        # One batched call of the fast tokenizer (the new tokens start after the longest prompt).
        prompt_lengths = [len(ids) for ids in self.tokenizer(prompts)["input_ids"]]
        # One GenerationConfig (the model's own, greedy, exactly max_new_tokens: the minimum
        # equal to the maximum makes generation ignore end-of-sequence) rather than keyword
        # arguments, which transformers would merge with the model's defaults and warn about.
        generation = copy.deepcopy(self.generation_config)
        generation.update(max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens, do_sample=False,
                          pad_token_id=self.tokenizer.pad_token_id)
        with warnings.catch_warnings():
            # "use a dataset for efficiency" - we time one pipeline call per batch on purpose.
            warnings.simplefilter("ignore")
            outputs = self.pipe(prompts, batch_size=len(prompts), generation_config=generation, return_tensors=True)
        # Each row is [left padding + prompt + new tokens]; the batch is padded to its longest
        # prompt, so the new tokens are everything after that length.
        padded_length = max(prompt_lengths)
        new_ids = [list(out[0]["generated_token_ids"][padded_length:]) for out in outputs]
        return GenerationResult(new_token_ids=new_ids, prompt_tokens=sum(prompt_lengths))

    def free(self) -> None:
        self.pipe = None
        self.recover_from_oom()

    @staticmethod
    def library_versions() -> dict[str, str]:
        import accelerate
        import torch
        import transformers

        return {"torch": torch.__version__, "transformers": transformers.__version__,
                "accelerate": accelerate.__version__}
