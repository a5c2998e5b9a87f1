# Benchmark data, locally built models, and hub models downloaded once.


rule benchmark_data:
    output:
        BENCHMARK_FILE,
    log:
        f"{RESULTS}/logs/benchmark_data.log",
    conda:
        analysis_env()
    params:
        name=CONFIG["benchmark"]["name"],
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
    wildcard_constraints:
        model=_model_keys_pattern(k for k, spec in CONFIG["models"].items() if "build" in spec),  # only models with `build`
    conda:
        analysis_env()
    params:
        settings=built_model_settings,
    script:
        "../workflow/scripts/build_model.py"


# One download per hf_id model, on the machine that runs Snakemake (a local rule: compute nodes
# often have no internet). The output is the model's manifest (repository, revision, commit,
# files), not the snapshot folder: Snakemake never walks or checksums the weights.
rule download_model:
    output:
        MODEL_MANIFEST,
    log:
        f"{RESULTS}/logs/download_model/{{model}}.log",
    wildcard_constraints:
        model=_model_keys_pattern(k for k, spec in CONFIG["models"].items() if "hf_id" in spec),
    conda:
        analysis_env()
    params:
        hf_id=model_hf_id,
        revision=model_revision,
    script:
        "../workflow/scripts/download_model.py"
