"""The search space of InfPop: number of GPUs (tensor-parallel ranks) x batch size."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

Point = tuple[int, int]  # (n_gpus, batch_size)


@dataclass(frozen=True)
class Space:
    n_gpus: tuple[int, ...]
    batch_sizes: tuple[int, ...]

    def __post_init__(self):
        object.__setattr__(self, "n_gpus", tuple(sorted(set(int(g) for g in self.n_gpus))))
        object.__setattr__(self, "batch_sizes", tuple(sorted(set(int(b) for b in self.batch_sizes))))
        if not self.n_gpus or not self.batch_sizes:
            raise ValueError(f"empty search space: n_gpus {list(self.n_gpus)} x batch_sizes {list(self.batch_sizes)}")
        if min(self.n_gpus) < 1 or min(self.batch_sizes) < 1:
            raise ValueError("GPU counts and batch sizes must be at least 1")

    @property
    def points(self) -> list[Point]:
        """Every point, GPU count ascending, then batch size ascending."""
        return [(g, b) for g in self.n_gpus for b in self.batch_sizes]

    def __len__(self) -> int:
        return len(self.n_gpus) * len(self.batch_sizes)

    def coordinates(self) -> np.ndarray:
        """Each point as (log2 GPUs, log2 batch size), each scaled to [0, 1] over the space: both
        hyperparameters act multiplicatively (twice the batch, twice the ranks)."""

        def scale(values):
            logs = [math.log2(v) for v in values]
            low, span = min(logs), (max(logs) - min(logs)) or 1.0
            return {v: (math.log2(v) - low) / span for v in values}

        g, b = scale(self.n_gpus), scale(self.batch_sizes)
        return np.array([[g[p[0]], b[p[1]]] for p in self.points])


@dataclass(frozen=True)
class Outcome:
    """What evaluating one point gave. `value` is the objective (larger is better), None when the
    point is infeasible: it failed (out of memory, error, ...), was never measured (`missing`) or
    broke a constraint (`latency_limit`)."""

    value: float | None
    status: str
    throughput: float | None = None
    latency_p95_s: float | None = None
    reused: bool = False  # live tuning: the trial JSON existed already

    @property
    def feasible(self) -> bool:
        return self.value is not None


#: Statuses that mean "this batch size does not fit at this GPU count": every larger batch size
#: at the same GPU count fails too (memory grows with the batch), so a search need not try them.
OUT_OF_MEMORY = {"oom", "skipped_oom"}
#: A GPU count the engine cannot run the model at (its attention heads do not divide by the
#: tensor-parallel size): no batch size there runs.
UNSUPPORTED = "unsupported"
