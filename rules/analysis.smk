# RQ1-RQ4 and the discussion, for each dataset (measured: our trials; paper: the published ones),
# the paper's conclusions checked on each, what each dataset's trials cost, the paper comparison,
# and the repetitions of our measurements as data.


rule import_paper:
    output:
        trials=PAPER_TRIALS,
        appendix=directory(f"{RESULTS}/paper/appendix"),
    log:
        f"{RESULTS}/logs/import_paper.log",
    conda:
        analysis_env()
    params:
        # the published data (checked by sha256), not where it is copied from (paper_data.local_dir,
        # which the script reads from the run's config): a run that names another folder, or none,
        # finds the same data and imports nothing again
        appendix=PAPER_APPENDIX,
    script:
        "../workflow/scripts/import_paper.py"


rule rq1_landscapes:
    input:
        dataset_trials,
    output:
        features=report(
            f"{RESULTS}/{{dataset}}/rq1/landscape_features.csv",
            caption="../workflow/report/rq1_features.rst",
            category="RQ1 landscapes",
            subcategory="{dataset}",
        ),
        png=report(
            directory(f"{RESULTS}/{{dataset}}/rq1/landscapes"),
            patterns=["{name}.png"],
            caption="../workflow/report/rq1_landscape.rst",
            category="RQ1 landscapes",
            subcategory="{dataset}",
        ),
        html=directory(f"{RESULTS}/{{dataset}}/rq1/interactive"),
    log:
        f"{RESULTS}/logs/{{dataset}}/rq1.log",
    conda:
        analysis_env()
    params:
        settings=analysis_settings,
    script:
        "../workflow/scripts/rq1.py"


rule rq2_table2:
    input:
        dataset_trials,
    output:
        csv=report(
            f"{RESULTS}/{{dataset}}/rq2/table2_{{hardware}}.csv",
            caption="../workflow/report/rq2_table2.rst",
            category="RQ2 GPU scaling",
            subcategory="{dataset}",
        ),
        md=f"{RESULTS}/{{dataset}}/rq2/table2_{{hardware}}.md",
        png=report(
            directory(f"{RESULTS}/{{dataset}}/rq2/gpu_scaling_{{hardware}}"),
            patterns=["{name}.png"],
            caption="../workflow/report/rq2_scaling.rst",
            category="RQ2 GPU scaling",
            subcategory="{dataset}",
        ),
    log:
        f"{RESULTS}/logs/{{dataset}}/rq2_table2_{{hardware}}.log",
    wildcard_constraints:
        hardware=r"[A-Za-z0-9_-]+",
    conda:
        analysis_env()
    params:
        settings=analysis_settings,
    script:
        "../workflow/scripts/rq2_table2.py"


rule rq2_anova:
    input:
        dataset_trials,
    output:
        anova=report(
            f"{RESULTS}/{{dataset}}/rq2/anova.csv",
            caption="../workflow/report/rq2_anova.rst",
            category="RQ2 GPU scaling",
            subcategory="{dataset}",
        ),
        tukey=report(
            f"{RESULTS}/{{dataset}}/rq2/tukey.csv",
            caption="../workflow/report/rq2_tukey.rst",
            category="RQ2 GPU scaling",
            subcategory="{dataset}",
        ),
    log:
        f"{RESULTS}/logs/{{dataset}}/rq2_anova.log",
    conda:
        analysis_env()
    params:
        settings=analysis_settings,
    script:
        "../workflow/scripts/rq2_anova.py"


rule rq3_batch:
    input:
        dataset_trials,
    output:
        anova=report(
            f"{RESULTS}/{{dataset}}/rq3/anova.csv",
            caption="../workflow/report/rq3_anova.rst",
            category="RQ3 batch size",
            subcategory="{dataset}",
        ),
        wilcoxon=report(
            f"{RESULTS}/{{dataset}}/rq3/wilcoxon_engines.csv",
            caption="../workflow/report/rq3_wilcoxon.rst",
            category="RQ3 batch size",
            subcategory="{dataset}",
        ),
        curves=report(
            directory(f"{RESULTS}/{{dataset}}/rq3/curves"),
            patterns=["{name}.png"],
            caption="../workflow/report/rq3_curves.rst",
            category="RQ3 batch size",
            subcategory="{dataset}",
        ),
    log:
        f"{RESULTS}/logs/{{dataset}}/rq3.log",
    conda:
        analysis_env()
    params:
        settings=analysis_settings,
    script:
        "../workflow/scripts/rq3.py"


rule rq4_hardware:
    input:
        dataset_trials,
    output:
        wilcoxon=report(
            f"{RESULTS}/{{dataset}}/rq4/wilcoxon_hardware.csv",
            caption="../workflow/report/rq4_wilcoxon.rst",
            category="RQ4 GPU model",
            subcategory="{dataset}",
        ),
        improvement=report(
            f"{RESULTS}/{{dataset}}/rq4/improvement.csv",
            caption="../workflow/report/rq4_improvement.rst",
            category="RQ4 GPU model",
            subcategory="{dataset}",
        ),
    log:
        f"{RESULTS}/logs/{{dataset}}/rq4.log",
    conda:
        analysis_env()
    params:
        settings=analysis_settings,
    script:
        "../workflow/scripts/rq4.py"


rule discussion:
    input:
        trials=dataset_trials,
    output:
        report(
            f"{RESULTS}/{{dataset}}/discussion/correlations.csv",
            caption="../workflow/report/discussion.rst",
            category="Discussion",
            subcategory="{dataset}",
        ),
    log:
        f"{RESULTS}/logs/{{dataset}}/discussion.log",
    conda:
        analysis_env()
    params:
        settings=analysis_settings,
        metadata=dataset_metadata,
    script:
        "../workflow/scripts/discussion.py"


rule comparison:
    input:
        unpack(comparison_inputs),
    output:
        csv=report(
            f"{RESULTS}/paper/comparison.csv",
            caption="../workflow/report/comparison.rst",
            category="Paper vs reproduction",
        ),
        md=f"{RESULTS}/paper/comparison.md",
    log:
        f"{RESULTS}/logs/paper/comparison.log",
    conda:
        analysis_env()
    script:
        "../workflow/scripts/comparison.py"


rule conclusions:
    input:
        unpack(conclusions_inputs),
    output:
        csv=report(
            f"{RESULTS}/{{dataset}}/conclusions.csv",
            caption="../workflow/report/conclusions.rst",
            category="Conclusions",
            subcategory="{dataset}",
        ),
        md=f"{RESULTS}/{{dataset}}/conclusions.md",
        png=report(
            f"{RESULTS}/{{dataset}}/conclusions.png",
            caption="../workflow/report/conclusions_png.rst",
            category="Conclusions",
            subcategory="{dataset}",
        ),
    log:
        f"{RESULTS}/logs/{{dataset}}/conclusions.log",
    conda:
        analysis_env()
    params:
        settings=analysis_settings,
        reference_settings=conclusions_reference_settings,
        # against the reference data: the landscapes' optima (the paper's text states the rest)
        relative_families=["rq1"],
    script:
        "../workflow/scripts/conclusions.py"


rule cost:
    input:
        dataset_trials,
    output:
        csv=report(
            f"{RESULTS}/{{dataset}}/cost.csv",
            caption="../workflow/report/cost.rst",
            category="Cost",
            subcategory="{dataset}",
        ),
        md=f"{RESULTS}/{{dataset}}/cost.md",
        png=report(
            f"{RESULTS}/{{dataset}}/cost.png",
            caption="../workflow/report/cost_png.rst",
            category="Cost",
            subcategory="{dataset}",
        ),
    log:
        f"{RESULTS}/logs/{{dataset}}/cost.log",
    conda:
        analysis_env()
    params:
        cpu_hardware=cost_cpu_hardware,
        how=cost_source,
    script:
        "../workflow/scripts/cost.py"


rule repetitions:
    input:
        trials=OWN_TRIALS,
        manifests=sweep_manifests(),
    output:
        configurations=report(
            f"{OWN_DIR}/repetitions/configurations.csv",
            caption="../workflow/report/repetitions.rst",
            category="Repetitions and noise",
        ),
        noise=report(
            f"{OWN_DIR}/repetitions/noise.csv",
            caption="../workflow/report/noise.rst",
            category="Repetitions and noise",
        ),
        png=report(
            f"{OWN_DIR}/repetitions/noise.png",
            caption="../workflow/report/noise_png.rst",
            category="Repetitions and noise",
        ),
    log:
        f"{RESULTS}/logs/{OWN}/repetitions.log",
    conda:
        analysis_env()
    script:
        "../workflow/scripts/repetitions.py"
