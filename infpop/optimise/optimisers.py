"""Optimisers behind one interface: `drive(evaluate)` calls `evaluate(point) -> Outcome` until the
search stops it (budget spent, optimum reached: search.StopSearch) or the optimiser has nothing
left to propose. Every optimiser maximises `Outcome.value`; an infeasible outcome is the worst.

- hyperopt_tpe: Hyperopt's TPE, as the paper's InfPop ran it (hp.choice per hyperparameter);
- optuna_tpe: Optuna's TPE sampler over the same categorical space;
- random: every point once, in a random order;
- grid: every point once, GPU count ascending, then batch size ascending;
- landscape_ei: ours, below.

landscape_ei is Bayesian optimisation shaped by what is known about throughput landscapes: a
Gaussian process over (log2 GPUs, log2 batch size) with expected improvement, weighted by the
probability that a point runs at all. Out of memory is monotone in batch size at a fixed GPU
count: one OOM rules out every larger batch there, and a batch size that ran proves every smaller
one runs. With a prior (the same engine and model measured on another GPU model, the RQ5
situation) it starts at the prior's best point and uses the prior landscape, scaled to the new
one, as the Gaussian process's mean and feasibility. It never proposes a point twice.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable

import numpy as np
from scipy.stats import norm

from infpop.optimise.space import OUT_OF_MEMORY, UNSUPPORTED, Outcome, Point, Space

Evaluate = Callable[[Point], Outcome]
#: The loss the paper's script gave an infeasible point (TPE ranks losses, so any worst value works).
INFEASIBLE_LOSS = 99999999.0


class Optimiser(ABC):
    name = ""

    def __init__(self, space: Space, seed: int, prior: dict[Point, float | None] | None = None):
        self.space, self.seed, self.prior = space, seed, prior

    @abstractmethod
    def drive(self, evaluate: Evaluate) -> None:
        """Propose points to `evaluate` until it raises StopSearch or nothing is left to try."""


class AskTell(Optimiser):
    """An optimiser that proposes one point at a time from what it has been told."""

    def drive(self, evaluate: Evaluate) -> None:
        while (point := self.ask()) is not None:
            self.tell(point, evaluate(point))

    @abstractmethod
    def ask(self) -> Point | None: ...

    def tell(self, point: Point, outcome: Outcome) -> None:
        pass


class GridSearch(AskTell):
    name = "grid"

    def __init__(self, space, seed, prior=None):
        super().__init__(space, seed, prior)
        self.todo = list(space.points)

    def ask(self):
        return self.todo.pop(0) if self.todo else None


class RandomSearch(AskTell):
    name = "random"

    def __init__(self, space, seed, prior=None):
        super().__init__(space, seed, prior)
        points = space.points
        self.todo = [points[i] for i in np.random.default_rng(seed).permutation(len(points))]

    def ask(self):
        return self.todo.pop(0) if self.todo else None


class HyperoptTPE(Optimiser):
    name = "hyperopt_tpe"

    def drive(self, evaluate):
        from hyperopt import fmin, hp, tpe

        # hyperopt logs the StopSearch that ends the search as a "job exception"
        logging.getLogger("hyperopt").setLevel(logging.CRITICAL)
        space = {
            "n_gpus": hp.choice("n_gpus", list(self.space.n_gpus)),
            "batch_size": hp.choice("batch_size", list(self.space.batch_sizes)),
        }

        def loss(args):
            outcome = evaluate((args["n_gpus"], args["batch_size"]))
            return INFEASIBLE_LOSS if outcome.value is None else -outcome.value

        # The search ends by StopSearch from `evaluate` (the budget); max_evals is only a backstop.
        fmin(
            loss,
            space,
            algo=tpe.suggest,
            max_evals=10**9,
            show_progressbar=False,
            rstate=np.random.default_rng(self.seed),
        )


class OptunaTPE(Optimiser):
    name = "optuna_tpe"

    def drive(self, evaluate):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.ERROR)  # it warns of the StopSearch that ends the search
        study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=self.seed))

        def loss(trial):
            point = (
                trial.suggest_categorical("n_gpus", list(self.space.n_gpus)),
                trial.suggest_categorical("batch_size", list(self.space.batch_sizes)),
            )
            outcome = evaluate(point)
            return INFEASIBLE_LOSS if outcome.value is None else -outcome.value

        study.optimize(loss, n_trials=10**9)


class LandscapeEI(AskTell):
    name = "landscape_ei"
    #: Length scales of the Gaussian process on the [0, 1]-scaled (log2 GPUs, log2 batch) axes.
    LENGTH_SCALES = np.array([0.5, 0.25])
    NOISE = 1e-3
    MIN_FEASIBILITY = 0.05  # an unexplored corner is never written off entirely

    def __init__(self, space, seed, prior=None):
        super().__init__(space, seed, prior)
        self.rng = np.random.default_rng(seed)
        self.points = space.points
        self.x = space.coordinates()
        self.told: dict[Point, Outcome] = {}
        self.ruled_out: set[Point] = set()
        known = {p: v for p, v in (prior or {}).items() if p in set(self.points)}
        feasible = [v for v in known.values() if v is not None]
        if feasible:
            top = max(feasible)
            self.prior_mean = np.array([(known.get(p) or 0.0) / top for p in self.points])
            self.prior_feasible = np.array(
                [0.5 if p not in known else float(known[p] is not None) for p in self.points]
            )
            self.first = max(known, key=lambda p: -1 if known[p] is None else known[p])
        else:
            self.prior_mean = None
            self.prior_feasible = np.full(len(self.points), 0.5)
            # No prior: the centre of the space (on the log axes; the cheaper side on a tie).
            self.first = (
                space.n_gpus[(len(space.n_gpus) - 1) // 2],
                space.batch_sizes[(len(space.batch_sizes) - 1) // 2],
            )

    def _kernel(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        d = (a[:, None, :] - b[None, :, :]) / self.LENGTH_SCALES
        return np.exp(-0.5 * (d**2).sum(-1))

    def _posterior(self, seen: list[int], candidates: list[int], y: np.ndarray, mean: np.ndarray):
        k = self._kernel(self.x[seen], self.x[seen]) + self.NOISE * np.eye(len(seen))
        ks = self._kernel(self.x[candidates], self.x[seen])
        mu = mean[candidates] + ks @ np.linalg.solve(k, y - mean[seen])
        var = 1.0 - np.einsum("ij,ji->i", ks, np.linalg.solve(k, ks.T))
        return mu, np.sqrt(np.maximum(var, 1e-12))

    def ask(self):
        candidates = [i for i, p in enumerate(self.points) if p not in self.told and p not in self.ruled_out]
        if not candidates:
            return None
        if not self.told:
            return self.first if self.first in [self.points[i] for i in candidates] else self.points[candidates[0]]
        seen = [i for i, p in enumerate(self.points) if p in self.told]
        feasible = [i for i in seen if self.told[self.points[i]].feasible]
        if feasible:
            scale = max(self.told[self.points[i]].value for i in feasible)
            y = np.array([self.told[self.points[i]].value / scale for i in feasible])
            mean = self.prior_mean if self.prior_mean is not None else np.full(len(self.points), y.mean())
            mu, sd = self._posterior(feasible, candidates, y, mean)
            z = (mu - y.max()) / sd
            improvement = (mu - y.max()) * norm.cdf(z) + sd * norm.pdf(z)
        else:
            improvement = np.ones(len(candidates))
        ran = np.array([float(self.told[self.points[i]].feasible) for i in seen])
        p_feasible, _ = self._posterior(seen, candidates, ran, self.prior_feasible)
        for j, i in enumerate(candidates):
            g, b = self.points[i]
            if any(o.feasible and pg == g and pb >= b for (pg, pb), o in self.told.items()):
                p_feasible[j] = 1.0  # a larger batch ran at these GPUs
        score = improvement * np.clip(p_feasible, self.MIN_FEASIBILITY, 1.0)
        score += 1e-12 * self.rng.random(len(candidates))  # ties broken by the seed
        return self.points[candidates[int(np.argmax(score))]]

    def tell(self, point, outcome):
        self.told[point] = outcome
        g, b = point
        if outcome.status in OUT_OF_MEMORY:
            self.ruled_out.update((g, larger) for larger in self.space.batch_sizes if larger > b)
        elif outcome.status == UNSUPPORTED:
            self.ruled_out.update((g, other) for other in self.space.batch_sizes)


OPTIMISERS: dict[str, type[Optimiser]] = {
    cls.name: cls for cls in (HyperoptTPE, OptunaTPE, RandomSearch, GridSearch, LandscapeEI)
}


def make(name: str, space: Space, seed: int, prior: dict | None = None) -> Optimiser:
    if name not in OPTIMISERS:
        raise ValueError(f"unknown optimiser {name!r} (known: {', '.join(OPTIMISERS)})")
    return OPTIMISERS[name](space, seed, prior)
