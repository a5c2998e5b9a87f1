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


rule sweep:
    input:
        benchmark=BENCHMARK_FILE,
        model=sweep_model_input,
    output:
        manifest=SWEEP_MANIFEST,
    log:
        f"{RESULTS}/logs/sweep/{{hardware}}/{{engine}}/{{model}}/g{{n_gpus}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/sweep/{{hardware}}/{{engine}}/{{model}}/g{{n_gpus}}.tsv"
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
