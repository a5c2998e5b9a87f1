# Every trial JSON of the plan into one tidy table.


rule aggregate:
    input:
        sweep_manifests(),
    output:
        MEASURED_TRIALS,
    log:
        f"{RESULTS}/logs/aggregate.log",
    params:
        trials_root=f"{RESULTS}/trials",
    script:
        "../workflow/scripts/aggregate.py"
