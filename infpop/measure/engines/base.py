"""The adapter interface every engine implements: load, generate one batch, free.

An engine either runs the model (its batches are timed by the worker's clock) or answers from a
record on a virtual clock (`simulated`, the rehearsal): it then says how long its load and each
batch would have taken, and the worker records those figures instead of wall time.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

#: A printed line taken for a failure's cause only when it reads as an error: a line that merely
#: mentions memory (an INFO line of the engine, advice in a warning) must not turn a failure into
#: an out-of-memory result.
_ERROR_LINE = re.compile(r"error|exception", re.IGNORECASE)
#: The prefix vLLM's processes put before each log line, e.g.
#: "(EngineCore pid=26090) ERROR 11-27 06:16:42 [core.py:1510] ": dropped from a cause we quote.
_LOG_PREFIX = re.compile(r"^(\(\w+ pid=\d+\) )?((DEBUG|INFO|WARNING|ERROR|CRITICAL) \S+ \S+ \[[^\]]*\] )?")
#: Log lines below error level are never a cause, whatever they mention.
_NOT_AN_ERROR = re.compile(r"^(\(\w+ pid=\d+\) )?(DEBUG|INFO|WARNING) ")
#: pydantic's wrapping of a ValueError raised while validating a config (vLLM's VllmConfig):
#: "Value error, <message> [type=value_error, input_value=...]" -> "<message>".
_PYDANTIC_WRAPPING = (re.compile(r"^Value error, "), re.compile(r"\s*\[type=\w+, .*$"))


class OutOfMemory(RuntimeError):
    """Our own out-of-memory verdict, where no library raises one (e.g. an hf load that would put
    weights on the CPU or disk while offloading is forbidden). `settings`: what the engine would
    have run with (recorded with the failed load)."""

    def __init__(self, message: str, settings: dict | None = None):
        super().__init__(message)
        self.settings = settings


@dataclass(frozen=True)
class EngineSpec:
    """What an engine needs to load a model."""

    model_source: str  # the folder to load: a local model, or a hub model's downloaded snapshot
    n_gpus: int  # GPUs (tensor-parallel ranks for vLLM; visible devices for hf)
    dtype: str  # float16 | bfloat16 | float32 | auto
    device: str  # "cpu" or "cuda"
    engine_args: dict = field(default_factory=dict)
    #: "forbid": a load that would put weights on the host or disk because the devices are full
    #: is out of memory (hf's device_map="auto" would offload them); "allow": measure it so.
    offload: str = "forbid"


@dataclass
class GenerationResult:
    """One batch: the new token ids per prompt (as the engine produced them) and prompt sizes."""

    new_token_ids: list[list[int]]
    prompt_tokens: int
    #: prompt tokens served from the engine's prefix cache (None: the engine has no such cache)
    cached_prompt_tokens: int | None = None
    #: the seconds the batch took on the virtual clock of an engine that answers from a record
    #: (None: it ran, and the worker's clock times it)
    simulated_seconds: float | None = None

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
    #: Whether the engine answers from a record on a virtual clock instead of running a model (the
    #: rehearsal): no device is used, so there is no memory or energy to read.
    simulated: bool = False

    def __init__(self, spec: EngineSpec):
        self.spec = spec

    @abstractmethod
    def load(self) -> float | None:
        """Load the model onto the devices. A simulated engine returns the seconds the load takes
        on its virtual clock; an engine that really loads returns None (the worker times it)."""

    def begin_trial(  # noqa: B027 - optional: only an engine that answers from a record needs it
        self, max_new_tokens: int, batch_size: int, rep: int, batch_sizes: list[int]
    ) -> None:
        """The trial whose batches (`batch_sizes` prompts each) the next generate calls are: an
        engine that answers from a record looks it up here; one that runs the model needs nothing."""

    def begin_batch(self, index: int) -> None:  # noqa: B027 - optional, as begin_trial
        """The position (among the trial's batches) of the batch the next generate call is: a
        sequential trial times them out of order (infpop.measure.sequential), and an engine that
        answers from a record answers by position."""

    @abstractmethod
    def generate(self, prompts: list[str], max_new_tokens: int) -> GenerationResult:
        """Generate for one batch of prompts in a single engine call."""

    def free(self) -> None:  # noqa: B027 - optional: most engines free with their process
        """Release the model (the worker process exiting frees everything as well)."""

    def effective_settings(self) -> dict:
        """The settings the engine really runs with, read back from it after loading (not only
        what we passed: an engine fills in its own defaults), for the trial record."""
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

    #: Regular expressions (case-insensitive) of an out-of-memory failure, looked for in the
    #: exception's text and in the error lines the engine's processes printed since the load or
    #: trial began. An engine adds its own (infpop/measure/engines/vllm.py); every pattern lives in the
    #: engine's module.
    OUT_OF_MEMORY_PATTERNS: tuple[str, ...] = (r"out of memory",)
    #: ... of a configuration the engine cannot run at all, at any batch size (e.g. a tensor-parallel
    #: size that does not divide the model's attention heads): status `unsupported`, not counted.
    UNSUPPORTED_PATTERNS: tuple[str, ...] = ()

    @classmethod
    def classify_failure(cls, exc: BaseException, printed: Iterable[str] = ()) -> tuple[str, str | None]:
        """(status, cause) of a failed load or trial: `unsupported`, `oom` or `error`, and the line
        that decided it (None when nothing matched). The exception comes first; then what the
        engine's own processes printed (`printed`, oldest first): vLLM's frontend raises only
        "Engine core initialization failed" or EngineDeadError, the real error (a KV cache that
        does not fit, a CUDA OOM in the engine core) is printed by the engine core."""
        if cls.is_out_of_memory_exception(exc):
            return "oom", None
        text = str(exc)
        for status, patterns in (("unsupported", cls.UNSUPPORTED_PATTERNS), ("oom", cls.OUT_OF_MEMORY_PATTERNS)):
            cause = _first_match(text.splitlines(), patterns)
            if cause is not None:
                return status, cause
        candidates = [line for line in printed if _ERROR_LINE.search(line) and not _NOT_AN_ERROR.match(line)]
        # The first printed error line that matches either kind: the root cause comes first.
        for line in candidates:
            for status, patterns in (("unsupported", cls.UNSUPPORTED_PATTERNS), ("oom", cls.OUT_OF_MEMORY_PATTERNS)):
                cause = _first_match([line], patterns)
                if cause is not None:
                    return status, cause
        return "error", None

    @staticmethod
    def is_out_of_memory_exception(exc: BaseException) -> bool:
        """Whether `exc` is itself an out-of-memory error (torch's, or our own verdict)."""
        if isinstance(exc, OutOfMemory):
            return True
        try:
            import torch

            return isinstance(exc, torch.OutOfMemoryError)
        except ImportError:  # pragma: no cover - torch is always there with our engines
            return False

    @classmethod
    def is_out_of_memory(cls, exc: BaseException, printed: Iterable[str] = ()) -> bool:
        """Whether `exc` (with what the engine printed) means the devices ran out of memory (an
        OOM is a result, not a failure)."""
        return cls.classify_failure(exc, printed)[0] == "oom"

    @classmethod
    def leaves_engine_unusable(cls, exc: BaseException) -> bool:
        """Whether after `exc` this engine cannot run another batch (vLLM's EngineDeadError): the
        worker is then replaced, whatever the trial's status."""
        return False

    @classmethod
    def refused_combination(cls, arguments: Mapping, model_config: dict | None = None) -> str | None:
        """Why the engine refuses this combination of engine arguments as a whole (each valid on its
        own), or None: a grid of engine-argument axes leaves such a combination out of its plan."""
        return None

    @staticmethod
    def library_versions() -> dict[str, str]:
        """Versions of the libraries this engine runs on, for the trial record."""
        return {}


def _first_match(lines: Iterable[str], patterns: Iterable[str]) -> str | None:
    """The first of `lines` matching one of `patterns`, without its log prefix and wrapping."""
    for line in lines:
        if any(re.search(pattern, line, re.IGNORECASE) for pattern in patterns):
            cause = _LOG_PREFIX.sub("", line.strip(), count=1).strip()
            for wrapping in _PYDANTIC_WRAPPING:
                cause = wrapping.sub("", cause)
            return cause[:1000]
    return None
