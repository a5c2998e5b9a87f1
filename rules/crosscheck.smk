# Our measurements checked against what others wrote: vLLM's own benchmark, a bare generate loop,
# and whether the engines agree on their outputs.


rule crosscheck:
    input:
        benchmark=BENCHMARK_FILE,
        model=crosscheck_model_input,
        sweeps=crosscheck_sweeps,
    output:
        table=report(
            f"{OWN_DIR}/crosscheck.csv",
            caption="../workflow/report/crosscheck.rst",
            category="Cross-checks",
        ),
        # our trial records, vllm bench's outputs and the details (crosscheck.json): a fresh
        # measurement each time the job runs
        folder=directory(f"{OWN_DIR}/crosscheck"),
    log:
        f"{RESULTS}/logs/{OWN}/crosscheck.log",
    conda:
        measuring_env(CROSSCHECK["hardware"], "tune")  # both engines, as live tuning
    threads: all_cores  # locally, nothing runs beside the measurements (on a cluster: set-threads)
    resources:
        gpu=crosscheck_gpus,
        gpu_model=crosscheck_gpu_model,
        mem_mb=crosscheck_mem_mb,
        runtime=crosscheck_runtime,
    params:
        settings=CROSSCHECK_SETTINGS,
    script:
        "../workflow/scripts/crosscheck.py"


rule agreement:
    input:
        sweep_manifests(),
    output:
        table=report(
            f"{OWN_DIR}/agreement.csv",
            caption="../workflow/report/agreement.rst",
            category="Cross-checks",
        ),
        png=report(
            f"{OWN_DIR}/agreement.png",
            caption="../workflow/report/agreement_png.rst",
            category="Cross-checks",
        ),
    log:
        f"{RESULTS}/logs/{OWN}/agreement.log",
    conda:
        analysis_env()
    script:
        "../workflow/scripts/agreement.py"
