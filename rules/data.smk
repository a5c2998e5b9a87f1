# Benchmark data and locally built models.


rule benchmark_data:
    output:
        BENCHMARK_FILE,
    log:
        f"{RESULTS}/logs/benchmark_data.log",
    params:
        name=CONFIG["benchmark"]["name"],
    conda:
        analysis_env()
    script:
        "../workflow/scripts/benchmark_data.py"


rule tiny_model:
    input:
        BENCHMARK_FILE,
    output:
        directory(BUILT_MODEL_DIR),
    log:
        f"{RESULTS}/logs/tiny_model/{{model}}.log",
    params:
        seed=built_model_seed,
    conda:
        analysis_env()
    script:
        "../workflow/scripts/tiny_model.py"
