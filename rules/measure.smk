# The measurements: the trial plan, the sweeps (one job per hardware, engine, model and n_gpus, one
# JSON per trial) and the table of every trial.


rule plan:
    output:
        PLAN_FILE,
    log:
        f"{RESULTS}/logs/plan.log",
    conda:
        analysis_env()
    params:
        config=MEASUREMENT_CONFIG,
    script:
        "../workflow/scripts/plan.py"


# A sweep runs trials on a compute node (it declares its GPUs). It is one job, or (when a
# partition's max_runtime is too short for it) one job per max_new_tokens, `part`
# _t<max_new_tokens>: the same trial JSONs, a manifest per job.
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
    conda:
        sweep_env
    threads: sweep_threads
    resources:
        gpu=sweep_gpus,
        gpu_model=sweep_gpu_model,
        mem_mb=sweep_mem_mb,
        runtime=sweep_runtime,
    params:
        config=MEASUREMENT_CONFIG,
    script:
        "../workflow/scripts/sweep.py"


rule aggregate:
    input:
        sweep_manifests(),
    output:
        MEASURED_TRIALS,
    log:
        f"{RESULTS}/logs/aggregate.log",
    conda:
        analysis_env()
    script:
        "../workflow/scripts/aggregate.py"


# What the trials ran on, from their records: commit, config hash, libraries, hardware, per sweep.
rule provenance:
    input:
        sweep_manifests(),
    output:
        json=report(f"{RESULTS}/provenance.json", caption="../workflow/report/provenance.rst", category="Provenance"),
        sweeps=report(
            f"{RESULTS}/provenance_sweeps.csv",
            caption="../workflow/report/provenance_sweeps.rst",
            category="Provenance",
        ),
    log:
        f"{RESULTS}/logs/provenance.log",
    conda:
        analysis_env()
    params:
        config=CONFIG,
    script:
        "../workflow/scripts/provenance.py"
