# The outputs each named target asks for, made of what the rules themselves declare.


def _outputs(rule, **wildcards):
    """Every output of a rule, its wildcards filled in every combination given."""
    return expand(list(rule.output), **wildcards)


def rq_outputs(rq, datasets=None):
    """The outputs of one research question (rq1 .. rq5, discussion) for the datasets."""
    targets = []
    for dataset in datasets or DATASETS:
        rules_of = {
            "rq1": [rules.rq1_landscapes],
            "rq2": [rules.rq2_anova],
            "rq3": [rules.rq3_batch],
            "rq4": [rules.rq4_hardware],
            "discussion": [rules.discussion],
            "rq5": [rules.optimise_study] + ([rules.optimise_rq5] if rq5_directions(dataset) else []),
        }[rq]
        for one in rules_of:
            targets += _outputs(one, dataset=dataset)
        if rq == "rq2":
            targets += _outputs(rules.rq2_table2, dataset=dataset, hardware=dataset_hardware(dataset))
    return targets


def measure_outputs():
    """The measurements: the plan, every sweep and their table, and the repetitions as data."""
    return [
        PLAN_FILE,
        OWN_TRIALS,
        *_outputs(rules.repetitions),
        *_outputs(rules.agreement),
        *_outputs(rules.provenance),
    ]


def conclusion_and_cost_outputs(datasets=None):
    """The paper's conclusions checked on each dataset, and what its trials cost."""
    return [
        t
        for dataset in datasets or DATASETS
        for rule in (rules.conclusions, rules.cost)
        for t in _outputs(rule, dataset=dataset)
    ]


def analysis_outputs():
    """The analyses of every dataset, the paper's conclusions checked on each and its cost, and
    the paper comparison (no live trials)."""
    targets = [t for rq in ("rq1", "rq2", "rq3", "rq4", "discussion", "rq5") for t in rq_outputs(rq)]
    targets += conclusion_and_cost_outputs()
    if "paper" in DATASETS:
        targets += _outputs(rules.comparison)
    return targets


def live_outputs():
    """What measures beyond the sweeps: live tuning and, when enabled, the cross-checks."""
    return _outputs(rules.optimise_tune) + (_outputs(rules.crosscheck) if CROSSCHECK["enabled"] else [])


def serve_outputs():
    """Serving mode: the plan, the tables and the analysis of every server, and the auto_tune
    comparison where serve.tuning asks for it (none without a serve section)."""
    if not SERVE:
        return []
    tuning = _outputs(rules.serve_autotune) if SERVE_TUNING else []
    return [SERVE_PLAN_FILE, *_outputs(rules.serve_tables), *_outputs(rules.serve_analysis), *tuning]


def reported_outputs():
    """Everything the report shows."""
    return measure_outputs() + analysis_outputs() + live_outputs() + serve_outputs()
