"""HuggingFace transformers text-generation pipeline, as the paper ran it.

The model is loaded with device_map="auto" (accelerate spreads it over the visible devices; the
worker limits CUDA_VISIBLE_DEVICES to n_gpus before torch starts) and each batch is one pipeline
call with the pipeline's batch_size set to the batch's size. Where the model does not fit on the
GPUs, "auto" puts weights on the host or disk: with offload "forbid" (the config's hf_offload) that
load is out of memory instead.
"""

from __future__ import annotations

import copy
import warnings
from collections import Counter

from infpop.measure.engines.base import Engine as BaseEngine
from infpop.measure.engines.base import GenerationResult, OutOfMemory

#: Where accelerate may put weights that do not fit on the accelerators: a trial with weights there
#: measures offloading, not the GPUs.
OFFLOAD_DEVICES = {"cpu", "disk"}


def modules_per_device(device_map: dict | None, model_device: str) -> dict[str, int]:
    """accelerate's map of module -> device, summarised as modules per device (a model loaded
    whole on one device has no map: one module there)."""
    per_device = Counter(str(device) for device in (device_map or {"": model_device}).values())
    return dict(sorted(per_device.items()))


def is_offloaded(per_device: dict[str, int], device: str) -> bool:
    """Whether weights sit on the host or disk while the model runs on GPUs. On the CPU the host
    is the device itself: never offloaded."""
    return device == "cuda" and bool(OFFLOAD_DEVICES & set(per_device))


def offload_refusal(per_device: dict[str, int], device: str, gpu_memory_bytes: list[int]) -> str | None:
    """Why a placement is refused under hf_offload: forbid (the model does not fit in the GPUs'
    memory), or None if nothing is offloaded."""
    if not is_offloaded(per_device, device):
        return None
    offloaded = {d: n for d, n in per_device.items() if d in OFFLOAD_DEVICES}
    where = " and ".join(f"{n} on {d}" for d, n in sorted(offloaded.items()))
    gpus = ", ".join(f"GPU {i}: {b / 2**30:.1f} GiB" for i, b in enumerate(gpu_memory_bytes)) or "no GPU"
    return (
        f"out of memory: the model does not fit in the GPUs' memory ({gpus}): device_map='auto' put "
        f"{sum(offloaded.values())} of {sum(per_device.values())} modules off the GPUs ({where}); "
        f"hf_offload is forbid (set hf_offload: allow to measure it offloaded)"
    )


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
        # The placement is transformers' own (device_map="auto", no max_memory of ours, as the
        # paper ran it); where it offloads and that is forbidden, the load fails here, after the
        # weights were read but before any trial is timed. A trial offloaded would measure the
        # host link, not the GPUs: 0.04 tok/s for Codellama-70b on 4 V100s in the paper's data.
        per_device = modules_per_device(getattr(model, "hf_device_map", None), str(model.device))
        if self.spec.offload == "forbid":
            memory = (
                [torch.cuda.get_device_properties(i).total_memory for i in range(torch.cuda.device_count())]
                if self.spec.device == "cuda"
                else []
            )
            refusal = offload_refusal(per_device, self.spec.device, memory)
            if refusal:
                del model
                raise OutOfMemory(refusal, settings={"device_map": per_device, "offloaded": True})
        model.eval()
        self.model, self.tokenizer = model, tokenizer
        self.generation_config = copy.deepcopy(model.generation_config)
        self.pipe = pipeline("text-generation", model=model, tokenizer=tokenizer)

    def _generation(self, max_new_tokens: int):
        """The model's own GenerationConfig, greedy, exactly max_new_tokens (the minimum equal to
        the maximum makes generation ignore end-of-sequence): one object rather than keyword
        arguments, which transformers would merge with the model's defaults and warn about."""
        generation = copy.deepcopy(self.generation_config)
        generation.update(
            max_new_tokens=max_new_tokens,
            min_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=self.tokenizer.pad_token_id,
        )
        return generation

    def generate(self, prompts: list[str], max_new_tokens: int) -> GenerationResult:
        # One batched call of the fast tokenizer (the new tokens start after the longest prompt).
        prompt_lengths = [len(ids) for ids in self.tokenizer(prompts)["input_ids"]]
        with warnings.catch_warnings():
            # "use a dataset for efficiency" - we time one pipeline call per batch on purpose.
            warnings.simplefilter("ignore")
            outputs = self.pipe(
                prompts,
                batch_size=len(prompts),
                generation_config=self._generation(max_new_tokens),
                return_tensors=True,
            )
        # Each row is [left padding + prompt + new tokens]; the batch is padded to its longest
        # prompt, so the new tokens are everything after that length.
        padded_length = max(prompt_lengths)
        new_ids = [list(out[0]["generated_token_ids"][padded_length:]) for out in outputs]
        return GenerationResult(new_token_ids=new_ids, prompt_tokens=sum(prompt_lengths))

    def generate_bare(self, prompts: list[str], max_new_tokens: int) -> GenerationResult:
        """The same batch through a bare `model.generate` (tokenise, generate, slice), without the
        pipeline: the cross-check that measures what the pipeline itself costs."""
        import torch

        inputs = self.tokenizer(prompts, return_tensors="pt", padding=True).to(self.model.device)
        with torch.inference_mode():
            output = self.model.generate(**inputs, generation_config=self._generation(max_new_tokens))
        padded_length = inputs["input_ids"].shape[1]
        new_ids = [row[padded_length:].tolist() for row in output]
        return GenerationResult(new_token_ids=new_ids, prompt_tokens=int(inputs["attention_mask"].sum()))

    def effective_settings(self) -> dict:
        import torch

        per_device = modules_per_device(getattr(self.model, "hf_device_map", None), str(self.model.device))
        return {
            "dtype": str(self.model.dtype).removeprefix("torch."),
            "device_map": per_device,
            "offloaded": is_offloaded(per_device, self.spec.device),
            "pipeline_device": str(self.pipe.device),
            "torch_threads": torch.get_num_threads(),  # the CPU threads torch's kernels use
        }

    def free(self) -> None:
        self.pipe = self.model = None
        self.recover_from_oom()

    @staticmethod
    def library_versions() -> dict[str, str]:
        import accelerate
        import torch
        import transformers

        return {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "accelerate": accelerate.__version__,
        }
