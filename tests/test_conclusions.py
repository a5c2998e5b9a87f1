"""The paper's conclusions as checks: the tolerances, the statements (typed once), synthetic
datasets (computable or not, relative checks, regret) and, on the paper's own published data,
every stated check passing or explained."""

from __future__ import annotations

import csv
import itertools
import math

import numpy as np
import pandas as pd
import pytest
from conftest import SHARED_DATA, needs_shared

from infpop import conclusions as c
from infpop.conclusions import Locations, Tolerance, passes

APPENDIX = SHARED_DATA / "infpop-appendix"

# --------------------------------------------------------------------------- tolerances


@pytest.mark.parametrize(
    "tolerance, value, reference, expected",
    [
        ("rel 0.10", 109.9, 100, True),
        ("rel 0.10", 110.1, "100", False),
        ("rel 0.10", 90.0, 100, True),
        ("abs 0.05", 0.45, 0.406, True),
        ("abs 0.05", 0.46, 0.406, False),
        ("exact", 12.0, "12", True),
        ("exact", 11.0, "12", False),
        ("exact", "2-8 x 8-16", "2-8 x 8-16", True),
        ("exact", "2-8 x 4-16", "2-8 x 8-16", False),
        ("decision", 0.001, "reject", True),
        ("decision", 0.2, "reject", False),
        ("decision", 0.2, "not reject", True),
        ("decision", 0.001, 0.002, True),  # a stated p-value: the same side of 0.05
        ("decision", 0.06, "0.002", False),
        ("sign", -3.0, "< 0", True),
        ("sign", 3.0, "< 0", False),
        ("sign", 0.2, 0.8, True),
        ("sign", 0.0, "> 0", False),
        ("at least 100", 100.0, "100", True),
        ("at least 100", 99.9, "100", False),
        ("at least 0.95", 0.96, 1.0, True),
    ],
)
def test_tolerances(tolerance, value, reference, expected):
    assert passes(value, reference, Tolerance.parse(tolerance)) is expected


def test_no_value_never_passes():
    for tolerance in ("rel 0.1", "abs 1", "exact", "decision", "sign", "at least 0", "steps 1"):
        assert not passes(None, "1", Tolerance.parse(tolerance))
        assert not passes(math.nan, "1", Tolerance.parse(tolerance)) or tolerance == "steps 1"
    assert not passes(Locations(()), "1x1", Tolerance.parse("steps 1"))


def test_a_mistyped_tolerance_is_refused():
    for text in ("rel", "within 10%", "at least", "steps one", "exact 1"):
        with pytest.raises(ValueError, match="not a tolerance"):
            Tolerance.parse(text)


def test_grid_steps_are_counted_on_the_landscape_axes():
    paper_grid = dict(gpus=(1, 2, 4, 8), batches=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1028))
    optimum = Locations(((8, 512),), **paper_grid)
    assert passes(optimum, "8x1028", Tolerance.parse("steps 1"))  # 512 -> 1028 is one step
    assert passes(optimum, "4x256", Tolerance.parse("steps 1"))  # diagonal: Chebyshev
    assert not passes(optimum, "8x128", Tolerance.parse("steps 1"))
    assert passes(optimum, "8x128", Tolerance.parse("steps 2"))
    # any stated location (steps), or every one of them (steps each)
    peaks = Locations(((1, 64), (8, 64), (4, 128)), **paper_grid)
    assert passes(peaks, "1x64 8x32", Tolerance.parse("steps 1 each"))
    assert not passes(peaks, "1x64 2x8", Tolerance.parse("steps 1 each"))
    assert passes(peaks, "1x64 2x8", Tolerance.parse("steps 1"))
    # a reference location outside the finding's grid extends it
    assert passes(Locations(((1, 4),), gpus=(1,), batches=(1, 4)), "1x6", Tolerance.parse("steps 1"))


def test_locations_read_and_print_alike():
    assert str(Locations.parse("1x64 8x64")) == "1x64 8x64"
    assert Locations.parse(" 2x128 ").points == ((2, 128),)
    with pytest.raises(ValueError, match="not a location list"):
        Locations.parse("1,64")


# --------------------------------------------------------------------------- the statements


def test_every_statement_reads_and_none_is_stated_twice():
    statements = c.read_statements()
    names = [s.check for s in statements]
    assert len(names) == len(set(names)) == 184
    assert {c._family(n) for n in names} == set(c.FAMILIES)
    for statement in statements:
        tolerance = Tolerance.parse(statement.tolerance)
        if tolerance.kind in ("rel", "abs", "exact", "at_least") and not statement.reference.count("-"):
            float(statement.reference)  # a number, as printed
        if tolerance.kind in ("steps", "steps_each"):
            Locations.parse(statement.reference)


def test_a_published_number_is_typed_once():
    """configs/paper_findings.csv states what configs/paper_reference.csv does not: none of its
    findings is a quantity of paper_reference.csv that is checked there."""
    with open(c.PAPER_REFERENCE) as handle:
        numbers = list(csv.DictReader(handle))
    checked = {c._name(r["quantity"], r["hardware"], r["engine"], r["model"]) for r in numbers if r["tolerance"]}
    every = {c._name(r["quantity"], r["hardware"], r["engine"], r["model"]) for r in numbers}
    with open(c.PAPER_FINDINGS) as handle:
        findings = list(csv.DictReader(handle))
    assert not checked & {r["finding"] for r in findings}
    # a number paper_findings.csv states is one the comparison does not hold at all
    for row in findings:
        if c._is_number(row["reference"]) and row["tolerance"] != "at least 100":
            assert row["finding"] not in every, row["finding"]
    # the misprinted p-values are compared by the comparison but checked as the decisions they state
    assert {r["finding"] for r in findings if r["finding"].startswith("rq4.p.")} <= every - checked


# --------------------------------------------------------------------------- synthetic datasets

GPUS, BATCHES = (1, 2, 4, 8), (1, 2, 4, 8, 16, 32, 64)


def synthetic(hardware=("a100", "v100"), models=("m1", "m2", "m3"), peak=None, seed=0) -> pd.DataFrame:
    """A complete grid of ok trials: vLLM 3x HF, the A100 1.6x the V100, throughput rising with the
    batch size and falling with the GPU count; `peak` ((hardware, engine, model), (g, b), factor)
    raises one cell."""
    rng = np.random.default_rng(seed)
    rows = []
    for hw, engine, (i, model), g, b in itertools.product(hardware, ("hf", "vllm"), enumerate(models), GPUS, BATCHES):
        throughput = (10 + 5 * i) * (3 if engine == "vllm" else 1) * (1.6 if hw == "a100" else 1) * b**0.5 / g**0.3
        if peak and peak[0] == (hw, engine, model) and peak[1] == (g, b):
            throughput *= peak[2]
        throughput *= rng.lognormal(0, 0.01)
        rows.append((hw, engine, model, g, 5, b, 0, "ok", throughput))
    columns = ["hardware", "engine", "model", "n_gpus", "max_new_tokens", "batch_size", "rep", "status"]
    return pd.DataFrame(rows, columns=[*columns, "throughput_tokens_per_s"])


@pytest.fixture(scope="module")
def full():
    return c.findings(synthetic())


def test_findings_are_named_quantity_hardware_engine_model(full):
    values = full.values
    assert isinstance(values["rq1.peak_location.a100.hf.m1"], Locations)
    assert str(values["rq1.peak_location.a100.hf.m1"]) == "1x64"  # largest batch, fewest GPUs
    assert values["table2.hf_best_gpus.a100.m2"] == 1.0
    assert values["table2.vllm_same_improvement.v100.mean"] == pytest.approx(3.0, rel=0.05)
    assert values["rq2.tukey.p.a100.vllm.1v8"] >= 0
    assert values["rq3.anova.p.v100.hf.g4"] < 0.05  # throughput grows with the batch
    assert values["rq3.wilcoxon.cliffs_delta.a100.g2"] > 0  # vLLM faster
    assert values["rq4.mean_improvement_pct.hf"] == pytest.approx(60, rel=0.05)
    assert values["rq4.mean_improvement_pct_vllm_minus_hf"] == pytest.approx(0, abs=3)
    assert values["rq4.throughput.a100.hf.m1.1x1"] == pytest.approx(16, rel=0.05)
    # RQ5, exhaustively: the optimum is the same on both GPUs, nothing to gain by re-tuning
    assert values["rq5.corrected.upgrade.median_of_medians.hf"] == pytest.approx(0, abs=3)
    assert all(full.quantities[name] == name[: len(full.quantities[name])] for name in values)


def test_a_dataset_checked_against_itself_passes_everything(full):
    table = c.check(full, reference=full, reference_label="self")
    assert len(table) and (table["status"] == "passed").all() and table["passed"].all()
    assert not table.duplicated(["check", "kind"]).any()
    assert list(table.columns[:5]) == ["check", "value", "reference", "tolerance", "passed"]
    assert set(table["family"]) == set(c.FAMILIES)
    regret = table[table["check"].str.startswith("rq1.peak_regret.")]
    assert len(regret) == 2 * 2 * 3 and (regret["value"] == 1.0).all()


def test_what_a_dataset_did_not_measure_is_not_computable_never_failed(full):
    """Without the V100, the A100-V100 comparisons (RQ4, RQ5) and the V100's landscapes cannot be
    computed: counted apart, not as wrong conclusions."""
    a100 = c.findings(synthetic(hardware=("a100",)))
    table = c.check(a100, c.read_statements(), reference=full, reference_label="full")
    relative = table[table["kind"] == "relative"]
    missing = relative[relative["status"] == "not computable"]
    assert len(missing) and (relative["status"].isin(["passed", "not computable"])).all()
    assert set(missing["family"]) >= {"rq1", "rq4", "rq5"}
    both = ("rq4.", "rq5.", "rq3.cliffs_delta.mean")  # the paper's A100-V100 findings
    assert all(".v100." in name or name.startswith(both) for name in missing["check"])
    # what the paper states of its models (none of them measured here) cannot be computed; what
    # it states of a hardware and engine (an ANOVA, a Wilcoxon test) can
    stated = table[table["kind"] == "stated"].set_index("check")["status"]
    assert (stated[[n for n in stated.index if "Bloom-1b7" in n or ".v100." in n]] == "not computable").all()
    assert stated["rq2.anova.p.a100.vllm"] != "not computable" and stated["rq3.wilcoxon.p.a100.g1"] == "passed"


def test_on_other_hardware_no_statement_of_the_paper_is_computable():
    """The paper's statements are of its A100 and V100 (the mean Cliff's delta too): a CPU
    dataset computes none of them, and fails none."""
    cpu = c.findings(synthetic(hardware=("cpu",)))
    table = c.check(cpu, c.read_statements())
    assert (table["status"] == "not computable").all() and len(table) == 184


def test_a_moved_optimum_fails_its_location_but_its_regret_tells_how_much_it_costs(full):
    """One landscape gets a higher cell far from the optimum (8 GPUs, batch size 1): the location
    moves 6 steps, the regret (the reference's throughput there over its optimum) is low."""
    moved = c.findings(synthetic(peak=(("a100", "hf", "m1"), (8, 1), 30.0)))
    table = c.check(moved, reference=full, reference_label="full", relative_families=("rq1",)).set_index("check")
    key = "a100.hf.m1"
    assert table.loc[f"rq1.peak_location.{key}", "status"] == "failed"
    assert table.loc[f"rq1.peak_location.{key}", "value"] == "8x1"
    assert table.loc[f"rq1.peak_regret.{key}", "value"] == pytest.approx(16 / 128 / 8**0.3, rel=0.05)
    assert table.loc[f"rq1.peak_regret.{key}", "status"] == "failed"
    assert table.loc[f"rq1.peak_throughput.{key}", "status"] == "failed"
    assert (table.drop(index=[f"rq1.peak_{q}.{key}" for q in ("location", "regret", "throughput")])["passed"]).all()


def test_a_near_tie_fails_the_location_but_not_the_regret(full):
    """A cell 2 % above the optimum, far from it: the location check flips, the regret does not."""
    optimum = full.values["rq1.peak_throughput.a100.vllm.m2"]
    factor = 1.02 * optimum / full.cells[("a100", "vllm", "m2")][(8, 8)]
    near = c.findings(synthetic(peak=(("a100", "vllm", "m2"), (8, 8), factor)))
    # the reference here is the tied dataset; the candidate is the full one
    table = c.check(full, reference=near, reference_label="tied", relative_families=("rq1",)).set_index("check")
    assert table.loc["rq1.peak_location.a100.vllm.m2", "status"] == "failed"
    assert table.loc["rq1.peak_regret.a100.vllm.m2", "value"] == pytest.approx(1 / 1.02, rel=1e-6)
    assert table.loc["rq1.peak_regret.a100.vllm.m2", "status"] == "passed"


def test_explained_only_where_the_papers_own_data_fails_too(full):
    """A stated check that fails is explained when the paper's data fails it too and its row says
    why; a check that fails only on the dataset is a failure, its note beside it."""
    statements = [
        c.Statement("table2.vllm_best_improvement.a100.mean", "9.9", "rel 0.10", "s", "misprinted"),
        c.Statement("rq4.mean_improvement_pct.hf", "60", "rel 0.10", "s", "a note"),
    ]
    slower = c.findings(
        synthetic(hardware=("a100", "v100")).assign(
            throughput_tokens_per_s=lambda t: t["throughput_tokens_per_s"].where(
                t["hardware"] == "a100", t["throughput_tokens_per_s"] * 1.6
            )
        )
    )
    assert c.known_differences(full, statements) == {"table2.vllm_best_improvement.a100.mean"}
    table = c.check(slower, statements, paper=full).set_index("check")
    assert table.loc["table2.vllm_best_improvement.a100.mean", "status"] == "explained"
    assert table.loc["rq4.mean_improvement_pct.hf", "status"] == "failed"
    assert table.loc["rq4.mean_improvement_pct.hf", "explanation"] == "a note"
    assert not table["passed"].any()
    # without the paper's findings nothing is explained
    assert set(c.check(slower, statements)["status"]) == {"failed"}


def test_summary_markdown_and_figure(full, tmp_path):
    statements = c.read_statements()
    table = c.check(full, statements, reference=full, reference_label="self", relative_families=("rq1",))
    counts = c.summary(table)
    assert list(counts.columns) == ["kind", "family", *c.STATUSES, "total"]
    assert counts["total"].sum() == len(table) == len(statements) + 3 * 12
    text = c.to_markdown(table, "synthetic")
    assert "# The paper's conclusions on the synthetic dataset" in text
    assert f"not computable: {c.counts(table)['not computable']}" in text and "## The paper's statements" in text
    assert "## Failed" in text
    assert c.conclusions_png(table, tmp_path / "c.png", "synthetic").stat().st_size > 0
    assert c.conclusions_png(table.iloc[0:0], tmp_path / "none.png", "synthetic").exists()


# --------------------------------------------------------------------------- the paper's own data


@pytest.fixture(scope="module")
def paper():
    from infpop.data.paper import import_paper

    return c.findings(import_paper(APPENDIX))


@needs_shared(APPENDIX / "allData.csv")
def test_on_the_papers_data_every_check_passes_or_is_a_stated_number_the_comparison_explains(paper):
    statements = c.read_statements()
    table = c.check(
        paper, statements, reference=paper, reference_label="paper", relative_families=("rq1",), paper=paper
    )
    stated = table[table["kind"] == "stated"]
    assert len(stated) == 184 and len(table) == 184 + 79 * 3
    assert c.counts(table) == {"passed": 419, "explained": 2, "failed": 0, "not computable": 0}
    explained = stated[stated["status"] == "explained"]
    # the two the paper swapped ("a mean (median) improvement of 4.3X (6.47X)"), named with why
    assert set(explained["check"]) == {
        "table2.vllm_same_improvement.a100.mean",
        "table2.vllm_same_improvement.a100.median",
    }
    assert explained["explanation"].str.contains("swapped").all()
    # what each family stands on: the paper's numbers, reproduced
    values = paper.values
    assert values["rq5.faithful.upgrade.median_of_medians.hf"] == pytest.approx(6.40, abs=0.005)
    assert values["rq5.faithful.upgrade.mean_of_medians_below_300.hf"] == pytest.approx(9.16, abs=0.005)
    assert values["rq5.faithful.downgrade.mean_of_medians.vllm"] == pytest.approx(6.90, abs=0.005)
    assert str(values["rq1.peak_location.a100.hf.Bloom-1b7"]) == "8x64"
    assert values["rq1.plateau.v100.hf.Starcoder-15b"] == "2-8 x 8-16"
    assert values["table2.n_vllm_best_gpus_differ.a100"] == 12
    assert len([n for n in values if n.startswith("rq1.peak_location.")]) == 79


@needs_shared(APPENDIX / "allData.csv")
def test_the_papers_data_without_the_v100_loses_computability_not_conclusions(paper):
    from infpop.data.paper import import_paper

    trials = import_paper(APPENDIX)
    a100 = c.findings(trials[trials["hardware"] == "a100"])
    table = c.check(a100, c.read_statements(), reference=paper, reference_label="paper", paper=paper)
    assert c.counts(table)["failed"] == 0
    missing = table[table["status"] == "not computable"]
    assert set(missing["family"]) == set(c.FAMILIES)
    both = ("rq4.", "rq5.", "rq3.cliffs_delta.mean")  # the paper's A100-V100 findings
    assert all(".v100." in name or name.startswith(both) for name in missing["check"])
    stated = table[(table["kind"] == "stated") & (table["family"] == "table2")]
    assert (stated["status"] != "not computable").all()  # the paper's Table II is the A100's
