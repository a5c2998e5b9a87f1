"""The paper's conclusions as checks, evaluated on any dataset (results/<dataset>/conclusions.csv).

It stands above both the analyses (RQ1-RQ4) and the optimiser (RQ5's search), whose results it
reads, and which read the trials through analysis/selection.py below them both.

A *finding* is a quantity of a dataset the paper draws a conclusion from, computed by the
analysis's own functions (rq1 .. rq4, and RQ5 by exhaustive search) and named
`<quantity>.<hardware>.<engine>.<model or key>` (the parts that apply, in that order), e.g.
`table2.vllm_best_improvement.a100.Phi-2`, `rq3.anova.p.v100.hf.g8`, `rq1.peak_location.a100.hf.Bloom-1b7`.

A *check* compares a finding with a reference under a tolerance. Two kinds:

- stated: what the paper states. Its numbers are typed once, in configs/paper_reference.csv (a row
  is a check when its `tolerance` is set; the comparison puts every row beside our value); what
  it states that is not one of those numbers (a significance decision, a direction, a location, a
  count) is in configs/paper_findings.csv.
- relative: the same finding of a reference dataset, with the tolerance of RELATIVE_TOLERANCES. For
  the per-landscape optima the reference is the paper's published trials (the paper states few
  locations in its text, its data has all 79); a budget study passes its full run instead.

Tolerances (the `tolerance` column): `rel X` (|value - reference| <= X |reference|), `abs X`,
`exact`, `decision` (a p-value on the same side of ALPHA as the reference's p, or as the stated
`reject` / `not reject`), `sign` (the reference's sign, or `> 0` / `< 0`), `at least X`,
`steps N` (a location within N grid steps of any reference location: the Chebyshev distance on
the indices of the landscape's GPU counts and batch sizes, so 512 -> 1028 is one step) and
`steps N each` (every reference location has one of the finding's locations within N steps).

The optimum of a landscape is RQ1's: its global maximum (infpop.analysis.rq1.landscape_table) under
the dataset's analysis settings, i.e. by default with the throughput of trials that ran out of
memory part-way counted, as the paper counted them (its RQ1 statements reproduce only so; RQ5's
corrected mode, which counts finished trials only, differs in 22 of the paper's 79 landscapes). A
location check flips on near-ties (29 of the paper's landscapes have a cell more than one step
away within 2 % of the optimum), so the relative checks also give each landscape's regret: the
reference's throughput at the dataset's optimum over the reference's optimum, at least 0.95.

Each check's status: passed; explained (a stated number that fails, whose reference row says why:
the comparison's explanation, e.g. the mean and median the paper swapped); failed (computed, not
within the tolerance, or no value: e.g. no counted trial where one is needed); not computable (the
dataset has no such finding at all: its hardware, engine, model or GPU count was not measured),
counted apart, never a failure.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from infpop import REPO_ROOT
from infpop.analysis.rq1 import landscape_table
from infpop.analysis.rq2 import rq2_anova, rq2_tukey, table2, table2_summary
from infpop.analysis.rq3 import rq3_anova, rq3_wilcoxon_engines
from infpop.analysis.rq4 import rq4_improvement, rq4_wilcoxon
from infpop.analysis.selection import AnalysisSettings, cells, select
from infpop.optimise import rq5
from infpop.optimise.objectives import Objective

logger = logging.getLogger(__name__)

PAPER_REFERENCE = REPO_ROOT / "configs" / "paper_reference.csv"
PAPER_FINDINGS = REPO_ROOT / "configs" / "paper_findings.csv"

ALPHA = 0.05
#: The paper's RQ5 directions (and RQ4's pair): the hardware labels its data uses.
NEWER, OLDER = "a100", "v100"
PAPER_DIRECTIONS = [rq5.Direction("upgrade", OLDER, NEWER), rq5.Direction("downgrade", NEWER, OLDER)]
#: The RQ2 follow-up test (IV-B 1a): the ANOVA again without one GPU.
FOLLOW_UP_GPU_COUNTS = (2, 4, 8)

#: Families in the order the paper answers them, with a reader's label.
FAMILIES = {
    "rq1": "RQ1 landscapes",
    "table2": "Table II",
    "rq2": "RQ2 GPU scaling",
    "rq3": "RQ3 batch size",
    "rq4": "RQ4 GPU model",
    "rq5": "RQ5 re-tuning",
}
STATUSES = ("passed", "explained", "failed", "not computable")
KINDS = ("stated", "relative")
COLUMNS = [
    "check",
    "value",
    "reference",
    "tolerance",
    "passed",
    "status",
    "kind",
    "family",
    "source",
    "explanation",
]

#: A relative check's tolerance, by quantity: a finding of the reference whose quantity is not
#: here is not checked relatively. Decisions and directions as the stated checks judge them; the
#: optimum's throughput within 5 % and the factors and improvements within 10 %, as the issue
#: asks; RQ5's summaries (a few percentage points) within one point.
RELATIVE_TOLERANCES = {
    "rq1.peak_location": "steps 1",
    "rq1.peak_throughput": "rel 0.05",
    "table2.hf_best_gpus": "exact",
    "table2.vllm_best_gpus": "exact",
    "table2.vllm_same_improvement": "rel 0.10",
    "table2.vllm_best_improvement": "rel 0.10",
    "rq2.anova.p": "decision",
    "rq2.anova_2_4_8.p": "decision",
    "rq2.tukey.p": "decision",
    "rq2.tukey.mean_diff": "sign",
    "rq3.anova.p": "decision",
    "rq3.wilcoxon.p": "decision",
    "rq3.wilcoxon.cliffs_delta": "sign",
    "rq3.cliffs_delta.mean": "abs 0.05",
    "rq4.p": "decision",
    "rq4.cliffs_delta": "abs 0.05",
    "rq4.mean_improvement_pct": "rel 0.10",
    "rq4.median_improvement_pct": "rel 0.10",
    "rq4.mean_improvement_pct_vllm_minus_hf": "sign",
    **{f"rq5.{m}.{d}.median_of_medians": "abs 1" for m in rq5.MODES for d in ("upgrade", "downgrade")},
    **{f"rq5.{m}.{d}.mean_of_medians_below_300": "abs 1" for m in rq5.MODES for d in ("upgrade", "downgrade")},
    **{f"rq5.{m}.{d}.median_of_medians_hf_minus_vllm": "sign" for m in rq5.MODES for d in ("upgrade", "downgrade")},
}
#: The regret check of each landscape (relative): the reference's throughput at the dataset's
#: optimum, over the reference's optimum.
REGRET = "rq1.peak_regret"
REGRET_TOLERANCE = "at least 0.95"


# -- locations on a landscape's grid --------------------------------------------------------------

Point = tuple[int, int]  # (n_gpus, batch_size)


@dataclass(frozen=True)
class Locations:
    """Points of one landscape (n_gpus, batch_size) and the grid they lie on (its GPU counts and
    batch sizes), which grid steps are counted on."""

    points: tuple[Point, ...]
    gpus: tuple[int, ...] = ()
    batches: tuple[int, ...] = ()

    def __str__(self) -> str:
        return " ".join(f"{g}x{b}" for g, b in self.points)

    @classmethod
    def parse(cls, text: str) -> Locations:
        """'1x64 8x64' -> the points (1, 64) and (8, 64)."""
        points = []
        for token in str(text).split():
            match = re.fullmatch(r"(\d+)x(\d+)", token)
            if not match:
                raise ValueError(f"not a location list {text!r} (expected e.g. '1x64 8x64': n_gpus x batch size)")
            points.append((int(match.group(1)), int(match.group(2))))
        return cls(tuple(points))


def grid_steps(a: Point, b: Point, gpus, batches) -> int:
    """Chebyshev distance of two points on the indices of the grid's GPU counts and batch sizes."""
    gpus, batches = sorted(set(gpus)), sorted(set(batches))
    return max(abs(gpus.index(a[0]) - gpus.index(b[0])), abs(batches.index(a[1]) - batches.index(b[1])))


def _step_distances(value: Locations, reference: Locations) -> np.ndarray:
    """Grid steps from each reference point (rows) to each point of the value (columns), on the
    union of both grids and the points themselves."""
    points = value.points + reference.points
    gpus = set(value.gpus) | set(reference.gpus) | {p[0] for p in points}
    batches = set(value.batches) | set(reference.batches) | {p[1] for p in points}
    return np.array([[grid_steps(r, v, gpus, batches) for v in value.points] for r in reference.points])


# -- tolerances -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tolerance:
    """How a finding is compared with its reference (see the module docstring)."""

    kind: str  # rel, abs, exact, decision, sign, at_least, steps, steps_each
    amount: float | None = None

    @classmethod
    def parse(cls, text: str) -> Tolerance:
        words = str(text).split()
        if words in (["exact"], ["decision"], ["sign"]):
            return cls(words[0])
        try:
            if len(words) == 2 and words[0] in ("rel", "abs", "steps"):
                return cls(words[0], float(words[1]))
            if len(words) == 3 and words[:2] == ["at", "least"]:
                return cls("at_least", float(words[2]))
            if len(words) == 3 and words[0] == "steps" and words[2] == "each":
                return cls("steps_each", float(words[1]))
        except ValueError:
            pass
        raise ValueError(
            f"not a tolerance: {text!r} (rel X, abs X, exact, decision, sign, at least X, steps N, steps N each)"
        )


def _missing(value) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, Locations) and not value.points


def _expected_decision(reference) -> bool:
    """Whether the reference rejects H0: a p-value below ALPHA, or the stated words."""
    if isinstance(reference, str):
        words = reference.strip().lower()
        if words in ("reject", "not reject"):
            return words == "reject"
        reference = float(reference)
    return float(reference) < ALPHA


def _expected_sign(reference) -> float:
    if isinstance(reference, str):
        text = reference.replace(" ", "")
        if text in ("<0", ">0"):
            return -1.0 if text == "<0" else 1.0
        reference = float(reference)
    return float(np.sign(reference))


def passes(value, reference, tolerance: Tolerance) -> bool:
    """Whether a finding's value agrees with its reference under the tolerance (False without a
    value)."""
    if _missing(value) or _missing(reference):
        return False
    kind, amount = tolerance.kind, tolerance.amount
    if kind in ("steps", "steps_each"):
        distances = _step_distances(
            value, reference if isinstance(reference, Locations) else Locations.parse(reference)
        )
        near = distances <= amount
        # rows: the reference's points, columns: the finding's
        return bool(near.any(axis=1).all() if kind == "steps_each" else near.any())
    if kind == "decision":
        return (float(value) < ALPHA) == _expected_decision(reference)
    if kind == "sign":
        return float(np.sign(value)) == _expected_sign(reference) != 0
    if kind == "at_least":
        return float(value) >= amount - 1e-12
    if kind == "exact":
        if isinstance(value, str) or isinstance(reference, str) and not _is_number(reference):
            return str(value) == str(reference)
        return math.isclose(float(value), float(reference), rel_tol=1e-12, abs_tol=1e-12)
    reference = float(reference)
    allowed = amount * abs(reference) if kind == "rel" else amount
    return abs(float(value) - reference) <= allowed + 1e-12


def _is_number(text) -> bool:
    try:
        float(text)
    except (TypeError, ValueError):
        return False
    return True


# -- the findings of a dataset --------------------------------------------------------------------


@dataclass
class Findings:
    """Every finding of one dataset: name -> value, name -> quantity, and each landscape's counted
    throughput per cell (for the regret of another dataset's optimum)."""

    values: dict[str, object] = field(default_factory=dict)
    quantities: dict[str, str] = field(default_factory=dict)
    cells: dict[tuple, dict[Point, float]] = field(default_factory=dict)

    def put(self, quantity: str, keys, value) -> None:
        name = ".".join([quantity, *(str(k) for k in keys)])
        if isinstance(value, (np.floating, np.integer)):
            value = float(value)
        elif value is pd.NA:
            value = None
        self.values[name] = value
        self.quantities[name] = quantity


def _float(value) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def findings(
    trials: pd.DataFrame, settings: AnalysisSettings | None = None, directions: list | None = None
) -> Findings:
    """Every finding of a tidy trials table (unselected: RQ5's faithful mode reads it whole), with
    the analysis choices `settings` (default: the paper's) and RQ5's `directions` (default: the
    paper's, between the hardware labels a100 and v100)."""
    settings = settings or AnalysisSettings()
    selected = select(trials, settings)
    found = Findings()
    if selected.empty:
        return found
    landscapes = set(selected[["hardware", "engine", "model"]].drop_duplicates().itertuples(index=False, name=None))
    _rq1(selected, found)
    _cells(selected, found)
    _table2(selected, landscapes, found)
    _rq2(selected, found)
    _rq3(selected, landscapes, found)
    _rq4(selected, landscapes, found)
    _rq5(trials, settings, PAPER_DIRECTIONS if directions is None else directions, found)
    return found


def _rq1(selected: pd.DataFrame, found: Findings) -> None:
    """Each landscape's optimum (location and throughput), its peaks and its plateau."""
    features = landscape_table(selected)
    for (hardware, engine, model), rows in features.groupby(["hardware", "engine", "model"], sort=True):
        one = selected[
            (selected["hardware"] == hardware) & (selected["engine"] == engine) & (selected["model"] == model)
        ]
        grid = {
            "gpus": tuple(sorted(int(g) for g in one["n_gpus"].unique())),
            "batches": tuple(sorted(int(b) for b in one["batch_size"].unique())),
        }
        key = (hardware, engine, model)

        def at(kinds, rows=rows, grid=grid):
            chosen = rows[rows["kind"].isin(kinds)].dropna(subset=["n_gpus", "batch_size"])
            return Locations(tuple((int(r.n_gpus), int(r.batch_size)) for r in chosen.itertuples()), **grid)

        best = rows[rows["kind"] == "global_max"]
        found.put("rq1.peak_location", key, at(["global_max"]))
        found.put("rq1.peak_throughput", key, _float(best["throughput"].iloc[0]) if len(best) else None)
        found.put("rq1.peaks", key, at(["global_max", "peak"]))
        plateau = rows[rows["kind"] == "plateau"]
        found.put(
            "rq1.plateau",
            key,
            f"{plateau['plateau_n_gpus'].iloc[0]} x {plateau['plateau_batch_sizes'].iloc[0]}" if len(plateau) else None,
        )


def _cells(selected: pd.DataFrame, found: Findings) -> None:
    """Each counted configuration's throughput (a landscape's cells, for the regret of another
    dataset's optimum; and findings of their own, for the A100-V100 examples of V-A)."""
    counted = cells(selected)
    counted = counted[counted["counted"]]
    for (hardware, engine, model), rows in counted.groupby(["hardware", "engine", "model"], sort=True):
        found.cells[(hardware, engine, model)] = {
            (int(r.n_gpus), int(r.batch_size)): float(r.throughput_tokens_per_s) for r in rows.itertuples()
        }
        for point, throughput in found.cells[(hardware, engine, model)].items():
            found.put("rq4.throughput", (hardware, engine, model, f"{point[0]}x{point[1]}"), throughput)


TABLE2_FINDINGS = ("hf_best_gpus", "vllm_best_gpus", "vllm_same_improvement", "vllm_best_improvement")


def _table2(selected: pd.DataFrame, landscapes: set, found: Findings) -> None:
    """Table II of every hardware, for the models measured there with both engines; the factors
    from throughputs rounded to one decimal, as the paper computed them."""
    for hardware in sorted(selected["hardware"].unique()):
        models = [
            m for m in sorted(selected["model"].unique()) if {(hardware, e, m) for e in ("hf", "vllm")} <= landscapes
        ]
        if not models:
            continue
        table = table2(selected[selected["model"].isin(models)], hardware, round_throughput=1)
        for row in table.itertuples():
            for column in TABLE2_FINDINGS:
                found.put(f"table2.{column}", (hardware, row.model), _float(getattr(row, column)))
        summary = table2_summary(table).set_index("quantity")["value"]
        for label in ("same", "best"):
            for statistic in ("mean", "median"):
                found.put(
                    f"table2.vllm_{label}_improvement",
                    (hardware, statistic),
                    _float(summary[f"{statistic}_{label}_improvement"]),
                )
        for quantity in ("n_vllm_best_gpus_differ", "n_vllm_best_more_gpus", "n_vllm_best_fewer_gpus"):
            found.put(f"table2.{quantity}", (hardware,), _float(summary[quantity]))
        best = table["vllm_best_gpus"].dropna()
        found.put("table2.n_vllm_best_1_gpu", (hardware,), float((best == 1).sum()) if len(best) else None)


def _rq2(selected: pd.DataFrame, found: Findings) -> None:
    """The ANOVAs across GPU counts at batch size 1 (all, and 2, 4 and 8 only) and Tukey's pairs."""
    for row in rq2_anova(selected).itertuples():
        found.put("rq2.anova.p", (row.hardware, row.engine), _float(row.p))
        found.put("rq2.anova.F", (row.hardware, row.engine), _float(row.F))
    for row in rq2_anova(selected, FOLLOW_UP_GPU_COUNTS).itertuples():
        found.put("rq2.anova_2_4_8.p", (row.hardware, row.engine), _float(row.p))
    for row in rq2_tukey(selected).itertuples():
        if pd.isna(row.group_a):
            continue  # too little data for any pair
        pair = f"{int(row.group_a)}v{int(row.group_b)}"
        found.put("rq2.tukey.p", (row.hardware, row.engine, pair), _float(row.p))
        found.put("rq2.tukey.mean_diff", (row.hardware, row.engine, pair), _float(row.mean_diff))


def _rq3(selected: pd.DataFrame, landscapes: set, found: Findings) -> None:
    """The ANOVAs across batch sizes, and vLLM against HF where a hardware has both."""
    for row in rq3_anova(selected).itertuples():
        found.put("rq3.anova.p", (row.hardware, row.engine, f"g{row.n_gpus}"), _float(row.p))
    both = {h for h, e, _ in landscapes if e == "hf"} & {h for h, e, _ in landscapes if e == "vllm"}
    wilcoxon = rq3_wilcoxon_engines(selected)
    wilcoxon = wilcoxon[wilcoxon["hardware"].isin(both)]
    for row in wilcoxon.itertuples():
        found.put("rq3.wilcoxon.p", (row.hardware, f"g{row.n_gpus}"), _float(row.p))
        found.put("rq3.wilcoxon.cliffs_delta", (row.hardware, f"g{row.n_gpus}"), _float(row.cliffs_delta))
    if {NEWER, OLDER} <= both:  # the paper's mean: over its two GPU models' GPU counts
        deltas = wilcoxon.loc[wilcoxon["hardware"].isin([NEWER, OLDER]), "cliffs_delta"].dropna()
        found.put("rq3.cliffs_delta.mean", (), float(deltas.mean()) if len(deltas) else None)


def _rq4(selected: pd.DataFrame, landscapes: set, found: Findings) -> None:
    """The newer GPU against the older, for the engines (and models) measured on both."""
    measured = {(hardware, engine) for hardware, engine, _ in landscapes}
    engines = [e for e in ("hf", "vllm") if {(NEWER, e), (OLDER, e)} <= measured]
    if not engines:
        return
    overall = rq4_wilcoxon(selected)
    for row in overall[overall["engine"].isin(engines)].itertuples():
        for column in ("p", "cliffs_delta", "mean_improvement_pct", "median_improvement_pct"):
            found.put(f"rq4.{column}", (row.engine,), _float(getattr(row, column)))
    if {"hf", "vllm"} <= set(engines):
        means = overall.set_index("engine")["mean_improvement_pct"]
        difference = _float(means["vllm"] - means["hf"])
        found.put("rq4.mean_improvement_pct_vllm_minus_hf", (), difference)
    for row in rq4_improvement(selected).itertuples():
        if {(NEWER, row.engine, row.model), (OLDER, row.engine, row.model)} <= landscapes:
            found.put("rq4.model_improvement_pct", (row.engine, row.model), _float(row.mean_improvement_pct))


def _rq5(trials: pd.DataFrame, settings: AnalysisSettings, directions: list, found: Findings) -> None:
    """RQ5 in both modes (faithful: the appendix script's procedure, the paper's numbers;
    corrected), each optimum found by exhaustive search: every hyperopt repeat of the paper's
    replay reached its landscape's optimum, so this gives its summaries exactly, in a second."""
    directions = rq5.applicable_directions([vars(d) for d in directions], set(trials["hardware"]))
    if not directions:
        return
    if "latency_p95_s" not in trials:  # a table of the trial columns alone (the throughput objective needs none)
        trials = trials.assign(latency_p95_s=np.nan)
    experiments = rq5.faithful_experiments(trials, directions, settings.max_new_tokens)
    experiments += rq5.corrected_experiments(trials, directions, settings, Objective())
    exhaustive = rq5.ReplaySettings(optimiser="grid", evaluations=max(len(e.space) for e in experiments), repeats=1)
    results = rq5.run_all(experiments, exhaustive, progress=False)
    logger.info(f"RQ5: {len(experiments)} experiments searched exhaustively")
    for result in results:
        if result.get("median") is not None:
            key = (result["engine"], result["model"])
            found.put(f"rq5.{result['mode']}.{result['direction']}.model_median", key, float(result["median"]))
    summary = rq5.summary(results)
    for row in summary.itertuples():
        for column in ("median_of_medians", "mean_of_medians", "mean_of_medians_below_300"):
            found.put(f"rq5.{row.mode}.{row.direction}.{column}", (row.engine,), _float(getattr(row, column)))
    medians = summary.set_index(["mode", "direction", "engine"])["median_of_medians"]
    for mode, direction in sorted({(m, d) for m, d, _ in medians.index}):
        if (mode, direction, "hf") in medians.index and (mode, direction, "vllm") in medians.index:
            hf, vllm = _float(medians[(mode, direction, "hf")]), _float(medians[(mode, direction, "vllm")])
            difference = None if hf is None or vllm is None else hf - vllm
            found.put(f"rq5.{mode}.{direction}.median_of_medians_hf_minus_vllm", (), difference)


# -- the paper's statements -----------------------------------------------------------------------


@dataclass(frozen=True)
class Statement:
    """One stated check: the finding it compares, the paper's statement of it, the tolerance."""

    check: str
    reference: str
    tolerance: str
    source: str
    explanation: str = ""


def _name(*parts) -> str:
    return ".".join(str(p) for p in parts if p not in ("", None) and not pd.isna(p))


def read_statements(reference_csv: Path = PAPER_REFERENCE, findings_csv: Path = PAPER_FINDINGS) -> list[Statement]:
    """The paper's stated checks: the rows of paper_reference.csv with a tolerance (their finding
    named quantity.hardware.engine.model) and every row of paper_findings.csv."""
    numbers = pd.read_csv(reference_csv, dtype=str, keep_default_na=False)
    stated = [
        Statement(
            _name(r["quantity"], r["hardware"], r["engine"], r["model"]),
            r["paper_value"],
            r["tolerance"],
            r["source"],
            r["explanation"],
        )
        for _, r in numbers.iterrows()
        if r["tolerance"].strip()
    ]
    others = pd.read_csv(findings_csv, dtype=str, keep_default_na=False)
    stated += [
        Statement(r["finding"], r["reference"], r["tolerance"], r["source"], r["explanation"])
        for _, r in others.iterrows()
    ]
    seen = set()
    for statement in stated:
        Tolerance.parse(statement.tolerance)  # a mistyped tolerance fails here, not in a check
        if statement.check in seen:
            raise ValueError(f"{statement.check} is stated twice (configs/paper_reference.csv, paper_findings.csv)")
        seen.add(statement.check)
    return stated


# -- checking -------------------------------------------------------------------------------------


def _family(name: str) -> str:
    return name.split(".", 1)[0]


def _shown(value):
    """A value as the table shows it: numbers as numbers, locations as '1x64 8x64'."""
    return str(value) if isinstance(value, Locations) else value


def _row(check, value, reference, tolerance, kind, source, explanation="", computable=True, explained=False) -> dict:
    passed = computable and passes(value, reference, Tolerance.parse(tolerance))
    if passed:
        status = "passed"
    elif not computable:
        status = "not computable"
    elif explained:
        status = "explained"
    else:
        status = "failed"
    return {
        "check": check,
        "value": _shown(value),
        "reference": _shown(reference),
        "tolerance": tolerance,
        "passed": passed,
        "status": status,
        "kind": kind,
        "family": _family(check),
        "source": source,
        "explanation": explanation,
    }


def stated_checks(dataset: Findings, statements: list[Statement], explained=frozenset()) -> list[dict]:
    """The statements checked on the dataset; a failing one named in `explained` is explained."""
    return [
        _row(
            s.check,
            dataset.values.get(s.check),
            s.reference,
            s.tolerance,
            "stated",
            s.source,
            s.explanation,
            computable=s.check in dataset.values,
            explained=s.check in explained,
        )
        for s in statements
    ]


def known_differences(paper: Findings, statements: list[Statement]) -> set[str]:
    """The statements the paper's own published data does not reproduce and whose reference row
    says why (the comparison's explanation): a number the paper misprinted, e.g. the mean and
    median it swapped. On any dataset such a check fails for that reason, not for the data."""
    return {
        row["check"]
        for row, statement in zip(stated_checks(paper, statements), statements, strict=True)
        if row["status"] == "failed" and statement.explanation
    }


def relative_checks(dataset: Findings, reference: Findings, label: str, families=tuple(FAMILIES)) -> list[dict]:
    """The reference dataset's findings (those of RELATIVE_TOLERANCES in `families`) against the
    dataset's, and each landscape's regret (family rq1)."""
    source = f"the {label} dataset's own value"
    rows = []
    for name, value in reference.values.items():
        quantity = reference.quantities[name]
        if quantity not in RELATIVE_TOLERANCES or _family(name) not in families or _missing(value):
            continue
        if RELATIVE_TOLERANCES[quantity] == "sign" and value == 0:
            continue  # no direction to reproduce
        rows.append(
            _row(
                name,
                dataset.values.get(name),
                value,
                RELATIVE_TOLERANCES[quantity],
                "relative",
                source,
                computable=name in dataset.values,
            )
        )
        if quantity == "rq1.peak_location":
            rows.append(_regret(name, dataset, reference, label))
    return rows


def _regret(location_name: str, dataset: Findings, reference: Findings, label: str) -> dict:
    key = tuple(location_name.split(".")[2:5])
    check = _name(REGRET, *key)
    source = f"the {label} dataset's throughput at this dataset's optimum, over its own optimum"
    ours = dataset.values.get(location_name)
    best = reference.values.get(_name("rq1.peak_throughput", *key))
    if location_name not in dataset.values:
        return _row(check, None, 1.0, REGRET_TOLERANCE, "relative", source, computable=False)
    ratio = None
    if not _missing(ours) and best:
        ratio = reference.cells.get(key, {}).get(ours.points[0], 0.0) / best  # not counted there: 0
    return _row(check, ratio, 1.0, REGRET_TOLERANCE, "relative", source)


def check(
    dataset: Findings,
    statements: list[Statement] | None = None,
    reference: Findings | None = None,
    reference_label: str = "reference",
    relative_families=tuple(FAMILIES),
    paper: Findings | None = None,
) -> pd.DataFrame:
    """The conclusion checks of a dataset: the paper's `statements` (stated checks; None: none)
    and, with a `reference` dataset, the relative checks of `relative_families`. With the `paper`'s
    own findings (its published trials), a stated check that fails there too and says why is
    `explained` (known_differences); without, it is `failed`, its explanation beside it. One row
    per check (COLUMNS); (check, kind) is unique."""
    explained = known_differences(paper, statements) if paper is not None and statements else set()
    rows = stated_checks(dataset, statements, explained) if statements else []
    if reference is not None:
        rows += relative_checks(dataset, reference, reference_label, relative_families)
    table = pd.DataFrame(rows, columns=COLUMNS)
    order = {family: i for i, family in enumerate(FAMILIES)}
    table["_order"] = table["family"].map(order).fillna(len(order))
    table["_kind"] = table["kind"].map({k: i for i, k in enumerate(KINDS)})
    return (
        table.sort_values(["_kind", "_order"], kind="stable").drop(columns=["_order", "_kind"]).reset_index(drop=True)
    )


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """Checks per kind and family: one column per status, and the total."""
    counts = table.groupby(["kind", "family", "status"]).size().unstack("status", fill_value=0)
    counts = counts.reindex(columns=list(STATUSES), fill_value=0)
    counts["total"] = counts.sum(axis=1)
    order = {(k, f): (i, j) for i, k in enumerate(KINDS) for j, f in enumerate(FAMILIES)}
    counts = counts.loc[sorted(counts.index, key=lambda key: order.get(key, (9, 9)))]
    return counts.reset_index()


def counts(table: pd.DataFrame) -> dict[str, int]:
    """How many checks have each status (every status listed)."""
    found = table["status"].value_counts()
    return {status: int(found.get(status, 0)) for status in STATUSES}


def to_markdown(table: pd.DataFrame, dataset: str) -> str:
    """The summary per family, then every check that did not pass (failed, explained) with its
    reason, then the stated checks in full."""

    def number(value) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return ""
        if isinstance(value, (bool, np.bool_)):
            return str(value)
        if isinstance(value, (int, float, np.floating)):
            return f"{value:.4g}"
        return str(value)

    total = counts(table)
    lines = [
        f"# The paper's conclusions on the {dataset} dataset",
        "",
        ", ".join(f"{status}: {n}" for status, n in total.items()) + f" (of {len(table)} checks)",
        "",
        "| kind | family | " + " | ".join(STATUSES) + " | total |",
        "| --- | --- | " + " | ".join("---:" for _ in STATUSES) + " | ---: |",
    ]
    for _, row in summary(table).iterrows():
        numbers = " | ".join(str(row[status]) for status in STATUSES)
        lines.append(f"| {row['kind']} | {FAMILIES.get(row['family'], row['family'])} | {numbers} | {row['total']} |")
    for status in ("failed", "explained"):
        chosen = table[table["status"] == status]
        if chosen.empty:
            continue
        lines += [
            "",
            f"## {status.capitalize()} ({len(chosen)})",
            "",
            "| check | kind | value | reference | tolerance | why |",
        ]
        lines.append("| --- | --- | --- | --- | --- | --- |")
        for row in chosen.itertuples(index=False):
            why = row.explanation or row.source
            shown = f"{number(row.value)} | {number(row.reference)} | {row.tolerance}"
            lines.append(f"| {row.check} | {row.kind} | {shown} | {why} |")
    stated = table[table["kind"] == "stated"]
    if len(stated):
        lines += ["", "## The paper's statements", "", "| check | value | reference | tolerance | status | source |"]
        lines.append("| --- | --- | --- | --- | --- | --- |")
        for row in stated.itertuples(index=False):
            lines.append(
                f"| {row.check} | {number(row.value)} | {number(row.reference)} | {row.tolerance} | {row.status} "
                f"| {row.source} |"
            )
    return "\n".join(lines) + "\n"


STATUS_COLOURS = {"passed": "tab:green", "explained": "tab:blue", "failed": "tab:red", "not computable": "lightgrey"}


def conclusions_png(table: pd.DataFrame, path, dataset: str, reference_label: str = "reference") -> Path:
    """One horizontal bar per kind and family: its checks passed, explained, failed and not
    computable."""
    import matplotlib.pyplot as plt

    from infpop.figures import message_png, save

    title = f"The paper's conclusions on the {dataset} dataset"
    if table.empty:
        return message_png(path, title, "no check")
    rows = summary(table)
    against = {"stated": "as the paper states", "relative": f"against the {reference_label} dataset"}
    labels = [f"{FAMILIES.get(r.family, r.family)}, {against.get(r.kind, r.kind)}" for r in rows.itertuples()]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.5))
    left = np.zeros(len(rows))
    positions = np.arange(len(rows))[::-1]
    for status in STATUSES:
        values = rows[status].to_numpy(float)
        ax.barh(positions, values, left=left, color=STATUS_COLOURS[status], label=status, edgecolor="white")
        for y, x0, v in zip(positions, left, values, strict=False):
            if v:
                ax.text(x0 + v / 2, y, str(int(v)), ha="center", va="center", fontsize=8)
        left += values
    ax.set_yticks(positions, labels, fontsize=9)
    ax.set_xlabel("checks")
    total = counts(table)
    ax.set_title(title + "\n" + ", ".join(f"{s}: {n}" for s, n in total.items()), fontsize=10)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    return save(fig, path)
