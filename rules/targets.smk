# Named targets: re-run one stage, one research question, the replay, or everything the report
# shows (their outputs: rules/common/targets.smk).


rule measure:
    input:
        measure_outputs(),


rule analysis:
    input:
        analysis_outputs(),


rule optimise:
    input:
        rq_outputs("rq5"),
        _outputs(rules.optimise_tune),


rule tune:
    input:
        _outputs(rules.optimise_tune),


rule paper:
    input:
        [t for rq in ("rq1", "rq2", "rq3", "rq4", "discussion", "rq5") for t in rq_outputs(rq, ["paper"])],
        conclusion_and_cost_outputs(["paper"]),
        _outputs(rules.comparison),


rule serving:
    input:
        serve_outputs(),


rule reported:
    input:
        reported_outputs(),


rule rq1:
    input:
        rq_outputs("rq1"),


rule rq2:
    input:
        rq_outputs("rq2"),


rule rq3:
    input:
        rq_outputs("rq3"),


rule rq4:
    input:
        rq_outputs("rq4"),


rule rq5:
    input:
        rq_outputs("rq5"),


rule budget:
    input:
        _outputs(rules.budget_study),
