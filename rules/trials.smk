# The trial plan and the sweeps: one job per (hardware, engine, model, n_gpus), one JSON per trial.


rule plan:
    output:
        PLAN_FILE,
    log:
        f"{RESULTS}/logs/plan.log",
    params:
        config=MEASUREMENT_CONFIG,
    conda:
        analysis_env()
    script:
        "../workflow/scripts/plan.py"


# A sweep is one job, or (when a partition's max_runtime is too short for it) one job per
# max_new_tokens, `part` _t<max_new_tokens>: the same trial JSONs, a manifest per job.
rule sweep:
    input:
        benchmark=BENCHMARK_FILE,
        model=sweep_model_input,
    output:
        manifest=SWEEP_MANIFEST,
    log:
        f"{RESULTS}/logs/sweep/{{hardware}}/{{engine}}/{{model}}/g{{n_gpus}}{{part}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/sweep/{{hardware}}/{{engine}}/{{model}}/g{{n_gpus}}{{part}}.tsv"
    params:
        config=MEASUREMENT_CONFIG,
    threads: sweep_threads
    resources:
        gpu=sweep_gpus,
        gpu_model=sweep_gpu_model,
        mem_mb=sweep_mem_mb,
        runtime=sweep_runtime,
    conda:
        sweep_env
    script:
        "../workflow/scripts/sweep.py"
