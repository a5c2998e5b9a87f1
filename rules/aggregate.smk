# Every trial JSON of the plan into one tidy table.


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
