# InfPop's optimisation: RQ5 (re-tuning after a GPU change) and the optimiser study, for each
# dataset, and live tuning through real trials.


rule hpo:
    input:
        dataset_trials,
    output:
        summary=report(
            f"{RESULTS}/{{dataset}}/rq5/summary.csv",
            caption="../workflow/report/rq5_summary.rst",
            category="RQ5 optimisation",
            subcategory="{dataset}",
        ),
        violin=report(
            f"{RESULTS}/{{dataset}}/rq5/violin.png",
            caption="../workflow/report/rq5_violin.rst",
            category="RQ5 optimisation",
            subcategory="{dataset}",
        ),
        models=directory(f"{RESULTS}/{{dataset}}/rq5/models"),
    log:
        f"{RESULTS}/logs/{{dataset}}/rq5.log",
    params:
        analysis=analysis_settings,
        optimisation=OPTIMISATION_REPLAY_CONFIG,
        modes=rq5_modes,
    threads: all_cores
    conda:
        analysis_env()
    script:
        "../workflow/scripts/hpo.py"


rule optimiser_study:
    input:
        dataset_trials,
    output:
        efficiency=report(
            f"{RESULTS}/{{dataset}}/rq5/efficiency.csv",
            caption="../workflow/report/rq5_efficiency.rst",
            category="RQ5 optimisation",
            subcategory="{dataset}",
        ),
        curves=f"{RESULTS}/{{dataset}}/rq5/efficiency_curves.csv",
        png=report(
            f"{RESULTS}/{{dataset}}/rq5/efficiency.png",
            caption="../workflow/report/rq5_efficiency.rst",
            category="RQ5 optimisation",
            subcategory="{dataset}",
        ),
    log:
        f"{RESULTS}/logs/{{dataset}}/optimiser_study.log",
    params:
        analysis=analysis_settings,
        optimisation=OPTIMISATION_REPLAY_CONFIG,
    threads: all_cores
    conda:
        analysis_env()
    script:
        "../workflow/scripts/optimiser_study.py"


rule tune:
    input:
        benchmark=BENCHMARK_FILE,
        model=tune_model_input,
        sweeps=tune_sweeps,
    output:
        recommendations=report(
            f"{RESULTS}/tune/recommendations.csv",
            caption="../workflow/report/tune.rst",
            category="Live tuning",
        ),
        results=expand(f"{RESULTS}/tune/{{engine}}.json", engine=TUNE_ENGINES),
        histories=expand(f"{RESULTS}/tune/{{engine}}_history.csv", engine=TUNE_ENGINES),
        pareto=report(
            expand(f"{RESULTS}/tune/{{engine}}_pareto.png", engine=TUNE_ENGINES),
            caption="../workflow/report/tune_pareto.rst",
            category="Live tuning",
        ),
    log:
        f"{RESULTS}/logs/tune.log",
    params:
        config=TUNE_CONFIG,
        trials_dir=f"{RESULTS}/trials",
    threads: all_cores  # locally, no other job runs beside the trials (on a cluster: set-threads)
    resources:
        gpu=tune_gpus,
        gpu_model=tune_gpu_model,
        mem_mb=tune_mem_mb,
        runtime=tune_runtime,
    conda:
        tune_env()
    script:
        "../workflow/scripts/tune.py"
