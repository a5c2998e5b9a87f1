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


# Every model with `build` (config key models.<key>.build): one rule, the builder chosen by the
# model's settings - tiny (seeded Llama, tokenizer trained on the benchmark) or gguf (a pretrained
# model dequantized from a GGUF file an installed package ships).
rule build_model:
    input:
        unpack(built_model_input),
    output:
        directory(BUILT_MODEL_DIR),
    log:
        f"{RESULTS}/logs/build_model/{{model}}.log",
    params:
        settings=built_model_settings,
    wildcard_constraints:
        model=BUILT_MODELS_PATTERN,
    conda:
        analysis_env()
    script:
        "../workflow/scripts/build_model.py"
