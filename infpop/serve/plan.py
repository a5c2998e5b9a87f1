"""The serving plan: which servers run (one job per hardware, engine, model, n_gpus and server
settings), their load points (request rate x max concurrency), and what is left out and why
(results/serve/plan.csv): a (hardware, engine, n_gpus) that cannot run, as the offline grid
decides it, and a combination of server settings the engine refuses as a whole.

The server settings are the engine arguments of `serve.engine_args` (fixed) and
`serve.engine_arg_axes` (lists: every combination is a server of its own), expanded by the same
code as the offline sweeps' (infpop.measure.grid.engine_settings).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from infpop.data.models import known_model_config
from infpop.measure.grid import EngineSettings, Sweep, engine_settings, exclusion_reason, write_plan_rows

INF = math.inf


@dataclass(frozen=True, order=True)
class ServeJob:
    """One server: what it runs on, which engine and model, and its settings' label."""

    hardware: str
    engine: str
    model: str
    n_gpus: int
    settings: str

    @property
    def relpath(self) -> str:
        """Folder of this server's load-point records, relative to the serving root."""
        return f"{self.hardware}/{self.engine}/{self.model}/g{self.n_gpus}/{self.settings}"

    @property
    def sweep(self) -> Sweep:
        """The offline sweep of the same hardware, engine, model and devices (its environment and
        exclusion rules are the server's)."""
        return Sweep(self.hardware, self.engine, self.model, self.n_gpus)

    @property
    def name(self) -> str:
        return f"serve {self.relpath}"


def rate_text(rate: float) -> str:
    return "inf" if math.isinf(rate) else f"{rate:g}"


@dataclass(frozen=True)
class LoadPoint:
    """One load on a server: requests offered per second (inf: all at once) and the client's limit
    on requests in flight (None: none).

    `emulated_max_num_seqs` (M): the load point stands for a vLLM server started with
    max_num_seqs = M, run on one started with more. The client keeps at most M requests in flight,
    and times each request from its arrival, so its wait for a free slot counts in its latency as
    the server's queue would (vLLM's scheduler runs at most max_num_seqs requests and queues the
    rest first come, first served). Only InfPop's client does this (bench/README.md measures it
    against real servers)."""

    request_rate: float
    max_concurrency: int | None = None
    emulated_max_num_seqs: int | None = None

    def __post_init__(self):
        if not self.request_rate > 0:
            raise ValueError(f"a request rate is positive, got {self.request_rate}")
        if self.max_concurrency is not None and self.max_concurrency < 1:
            raise ValueError(f"a concurrency limit is at least 1, got {self.max_concurrency}")
        if self.emulated_max_num_seqs is not None:
            if self.emulated_max_num_seqs < 1:
                raise ValueError(f"an emulated max_num_seqs is at least 1, got {self.emulated_max_num_seqs}")
            if self.max_concurrency is not None:
                raise ValueError("a load point emulates max_num_seqs or limits concurrency, not both")

    @property
    def client_limit(self) -> int | None:
        """The requests the client keeps in flight at most (None: no limit)."""
        return self.emulated_max_num_seqs or self.max_concurrency

    @property
    def label(self) -> str:
        """r<rate>_c<max concurrency> (`inf` for none): r4_cinf, rinf_c8, r2.5_c16; an emulated
        max_num_seqs M: r<rate>_s<M> (r4_s8)."""
        if self.emulated_max_num_seqs is not None:
            return f"r{rate_text(self.request_rate)}_s{self.emulated_max_num_seqs}"
        return f"r{rate_text(self.request_rate)}_c{self.max_concurrency or 'inf'}"

    def record_name(self, harness: str, rep: int) -> str:
        """The record's file name in its server's folder."""
        return f"{self.label}_{harness}_rep{rep}.json"

    def to_json(self) -> dict:
        rate = self.request_rate
        rate = "inf" if math.isinf(rate) else int(rate) if rate.is_integer() else rate  # as a config writes it
        emulated = {"emulated_max_num_seqs": self.emulated_max_num_seqs} if self.emulated_max_num_seqs else {}
        return {"request_rate": rate, "max_concurrency": self.max_concurrency, **emulated, "label": self.label}

    @classmethod
    def from_json(cls, data: dict) -> LoadPoint:
        return cls(float(data["request_rate"]), data.get("max_concurrency"), data.get("emulated_max_num_seqs"))

    def sort_key(self) -> tuple:
        """Lighter loads first: the rate, then the concurrency limit (none last)."""
        return (self.request_rate, self.max_concurrency or INF)


def load_points(section: dict) -> list[LoadPoint]:
    """The config's load points (serve.request_rates x serve.max_concurrency), lightest first."""
    points = [
        LoadPoint(float(rate), concurrency)
        for rate in section["request_rates"]
        for concurrency in section["max_concurrency"]
    ]
    return sorted(points, key=LoadPoint.sort_key)


def server_settings(config: dict, engine: str, model: str) -> tuple[list[EngineSettings], list[tuple]]:
    """The server settings of an engine for a model: (those that run, those refused with why)."""
    section = config["serve"]
    return engine_settings(
        engine,
        section["engine_args"].get(engine, {}),
        section["engine_arg_axes"].get(engine, {}),
        known_model_config(config, model),
    )


def settings_of(config: dict, job: ServeJob) -> EngineSettings:
    """The settings a job's label names."""
    runnable, _ = server_settings(config, job.engine, job.model)
    for settings in runnable:
        if settings.label == job.settings:
            return settings
    raise ValueError(f"'{job.settings}' is not a server setting of the plan for {job.engine} and {job.model}")


def plan(config: dict) -> tuple[list[ServeJob], list[dict]]:
    """(serving jobs to run, rows describing what is left out with its reason); none without a
    serve section."""
    section = config.get("serve")
    if not section:
        return [], []
    jobs, excluded = [], []
    for hardware in section["hardware"]:
        for engine in section["engines"]:
            for model in section["models"]:
                for n_gpus in sorted(section["n_gpus"]):
                    where = dict(hardware=hardware, engine=engine, model=model, n_gpus=n_gpus)
                    reason = exclusion_reason(config, hardware, engine, n_gpus, model)
                    if reason is None and engine == "hf" and n_gpus > 1:
                        reason = "transformers' server runs a model on one device (it has no device map)"
                    if reason is not None:
                        excluded.append(dict(where, settings="*", reason=reason))
                        continue
                    runnable, refused = server_settings(config, engine, model)
                    jobs += [ServeJob(hardware, engine, model, n_gpus, s.label) for s in runnable]
                    excluded += [dict(where, settings=s.label, reason=why) for s, why in refused]
    return jobs, excluded


def records_per_job(config: dict, engine: str) -> int:
    """The load-point records of one server: load points x repetitions x load generators."""
    section = config["serve"]
    return len(load_points(section)) * section["repetitions"] * len(section["harnesses"][engine])


PLAN_COLUMNS = ["hardware", "engine", "model", "n_gpus", "settings", "planned", "n_load_points", "reason"]


def plan_rows(config: dict) -> list[dict]:
    jobs, excluded = plan(config)
    rows = [
        dict(vars(job), planned="run", n_load_points=records_per_job(config, job.engine), reason="") for job in jobs
    ]
    rows += [dict(row, planned="excluded", n_load_points=0) for row in excluded]
    return sorted(rows, key=lambda r: (r["hardware"], r["engine"], r["model"], r["n_gpus"], r["settings"]))


def write_plan(config: dict, path: Path) -> list[dict]:
    return write_plan_rows(plan_rows(config), PLAN_COLUMNS, path)
