# Benchmark data, locally built models, and hub models downloaded once.


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


# One download per hf_id model, on the machine that runs Snakemake (a local rule: compute nodes
# often have no internet). The output is the model's manifest (repository, revision, commit,
# files), not the snapshot folder: Snakemake never walks or checksums the weights.
rule download_model:
    output:
        MODEL_MANIFEST,
    log:
        f"{RESULTS}/logs/download_model/{{model}}.log",
    wildcard_constraints:
        model=hub_models_pattern(),
    params:
        hf_id=model_hf_id,
        revision=model_revision,
        config_file=config_files(),
    conda:
        analysis_env()
    script:
        "../workflow/scripts/download_model.py"
