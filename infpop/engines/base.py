"""The adapter interface every engine implements: load, generate one batch, free."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field


@dataclass(frozen=True)
class EngineSpec:
    """What an engine needs to load a model."""

    model_source: str  # the folder to load: a local model, or a hub model's downloaded snapshot
    n_gpus: int  # GPUs (tensor-parallel ranks for vLLM; visible devices for hf)
    dtype: str  # float16 | bfloat16 | float32 | auto
    device: str  # "cpu" or "cuda"
    engine_args: dict = field(default_factory=dict)


@dataclass
class GenerationResult:
    """One batch: the new token ids per prompt (as the engine produced them) and prompt sizes."""

    new_token_ids: list[list[int]]
    prompt_tokens: int

    @property
    def new_tokens(self) -> int:
        return sum(len(ids) for ids in self.new_token_ids)


class Engine(ABC):
    """One model loaded in one engine. Generation is greedy and forced to exactly
    max_new_tokens new tokens (end-of-sequence ignored), so engines do the same work."""

    name: str
    #: Whether the model runs in the worker's own process (its CUDA memory is then torch's
    #: allocator's to report) rather than in processes the engine starts (vLLM).
    in_process: bool = True

    def __init__(self, spec: EngineSpec):
        self.spec = spec

    @abstractmethod
    def load(self) -> None:
        """Load the model onto the devices."""

    @abstractmethod
    def generate(self, prompts: list[str], max_new_tokens: int) -> GenerationResult:
        """Generate for one batch of prompts in a single engine call."""

    def free(self) -> None:
        """Release the model (the worker process exiting frees everything as well)."""

    def effective_settings(self) -> dict:
        """The settings the engine really runs with, read back from it after loading (not only
        what we passed: an engine fills in its own defaults), for the trial record."""
        return {}

    def counters(self) -> dict[str, float]:
        """The engine's own cumulative counters (e.g. vLLM's prefix-cache queries and hits); the
        worker records their change over each trial."""
        return {}

    def recover_from_oom(self) -> None:
        """Return what a failed batch held to the allocator, so the next trial starts clean."""
        import gc

        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:  # pragma: no cover
            pass

    @staticmethod
    def is_out_of_memory(exc: BaseException) -> bool:
        """Whether `exc` means the devices ran out of memory (an OOM is a result, not a failure)."""
        try:
            import torch

            if isinstance(exc, torch.OutOfMemoryError):
                return True
        except ImportError:  # pragma: no cover - torch is always there with our engines
            pass
        text = str(exc).lower()
        return "out of memory" in text or "no available memory for the cache blocks" in text

    @staticmethod
    def library_versions() -> dict[str, str]:
        """Versions of the libraries this engine runs on, for the trial record."""
        return {}
