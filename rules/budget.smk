# The budget study: each budget strategy alone and all combined on the rehearsal of the grid (the
# paper's, configs/paper.yaml), over seeds of the rehearsal's noise, against the paper's
# conclusion checks (docs/budget.md).


rule budget_study:
    input:
        trials=budget_study_table(),
        paper_reference=f"{workflow.basedir}/configs/paper_reference.csv",
        paper_findings=f"{workflow.basedir}/configs/paper_findings.csv",
    output:
        csv=report(
            f"{RESULTS}/budget/study.csv",
            caption="../workflow/report/budget_study.rst",
            category="Budget",
        ),
        md=report(
            f"{RESULTS}/budget/study.md",
            caption="../workflow/report/budget_study.rst",
            category="Budget",
        ),
        png=report(
            f"{RESULTS}/budget/study.png",
            caption="../workflow/report/budget_study_png.rst",
            category="Budget",
        ),
    log:
        f"{RESULTS}/logs/budget_study.log",
    conda:
        analysis_env()
    params:
        # the config's keys the study reads (infpop.budget.study.STUDY_KEYS), and the analysis
        # choices of the paper's data, which the checks are computed with
        study=budget_study_config(),
        settings=dataset_analysis_settings("paper"),
    script:
        "../workflow/scripts/budget_study.py"
