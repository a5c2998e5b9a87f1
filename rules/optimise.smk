# The optimise stage: RQ5 (re-tuning after a GPU change) and the optimiser study, for each
# dataset, and live tuning through real trials (config key `optimise`, package infpop.optimise).


rule optimise_rq5:
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
        f"{RESULTS}/logs/{{dataset}}/optimise_rq5.log",
    conda:
        analysis_env()
    threads: all_cores
    params:
        analysis=analysis_settings,
        optimise=RQ5_SETTINGS,
        modes=rq5_modes,
    script:
        "../workflow/scripts/optimise_rq5.py"


rule optimise_study:
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
        f"{RESULTS}/logs/{{dataset}}/optimise_study.log",
    conda:
        analysis_env()
    threads: all_cores
    params:
        analysis=analysis_settings,
        optimise=STUDY_SETTINGS,
    script:
        "../workflow/scripts/optimise_study.py"


rule optimise_tune:
    input:
        benchmark=BENCHMARK_FILE,
        model=tune_model_input,
        rehearsal=rehearsal_input,
        sweeps=tune_sweeps,
    output:
        recommendations=report(
            f"{RUN_DIR}/tune/recommendations.csv",
            caption="../workflow/report/tune.rst",
            category="Live tuning",
        ),
        results=expand(f"{RUN_DIR}/tune/{{engine}}.json", engine=TUNE["engines"]),
        histories=expand(f"{RUN_DIR}/tune/{{engine}}_history.csv", engine=TUNE["engines"]),
        pareto=report(
            expand(f"{RUN_DIR}/tune/{{engine}}_pareto.png", engine=TUNE["engines"]),
            caption="../workflow/report/tune_pareto.rst",
            category="Live tuning",
        ),
    log:
        f"{RUN_DIR}/logs/optimise_tune.log",
    conda:
        measuring_env(TUNE["hardware"], "tune")
    threads: all_cores  # locally, no other job runs beside the trials (on a cluster: set-threads)
    resources:
        gpu=tune_gpus,
        gpu_model=tune_gpu_model,
        mem_mb=tune_mem_mb,
        runtime=tune_runtime,
    params:
        settings=TUNE_SETTINGS,
        trials_dir=TRIALS_DIR,
    script:
        "../workflow/scripts/optimise_tune.py"
