# The measurements: the trial plan, the sweeps (one job per hardware, engine, model and n_gpus, one
# JSON per trial) and the table of every trial.


rule plan:
    output:
        PLAN_FILE,
    log:
        f"{RUN_DIR}/logs/plan.log",
    conda:
        analysis_env()
    params:
        grid=GRID_SETTINGS,
    script:
        "../workflow/scripts/plan.py"


# A budgeted run (budget.run): one job per (hardware, engine) spends its share of the budget as
# the budget study's run does, through the sweeps' supervisors (infpop/budget/spend.py): the
# sweeps' manifests and trial JSONs, and its ledger, budget.json.
for share in BUDGET_SHARES:

    rule:
        name:
            f"budget_{share.hardware}_{share.engine}"
        input:
            benchmark=BENCHMARK_FILE,
            models=budget_models_input(share),
            rehearsal=rehearsal_input,
        output:
            manifests=budget_manifests(share),
            ledger=budget_ledger(share),
        log:
            f"{RUN_DIR}/logs/budget/{share.hardware}/{share.engine}.log",
        conda:
            measuring_env(share.hardware, "tune")
        threads: all_cores  # as live tuning: one measurement at a time, on the GPUs it claims
        resources:
            gpu=budget_gpus(share),
            gpu_model=lambda wildcards, hardware=share.hardware: job_gpu_model(hardware),
            mem_mb=budget_mem_mb(share),
            runtime=budget_runtime(share),
        params:
            settings=budget_settings(share),
            hardware=share.hardware,
            engine=share.engine,
        script:
            "../workflow/scripts/budget_run.py"


# A sweep runs trials on a compute node (it declares its GPUs). It is one job, or (when a
# partition's max_runtime is too short for it) one job per max_new_tokens, `part`
# _t<max_new_tokens>: the same trial JSONs, a manifest per job. (Not in a budgeted run.)
if not BUDGET_SHARES:

    rule sweep:
        input:
            benchmark=BENCHMARK_FILE,
            model=sweep_model_input,
            rehearsal=rehearsal_input,
        output:
            manifest=SWEEP_MANIFEST,
        log:
            f"{RUN_DIR}/logs/sweep/{{hardware}}/{{engine}}/{{model}}/g{{n_gpus}}{{variant}}{{part}}.log",
        benchmark:
            f"{RUN_DIR}/benchmarks/sweep/{{hardware}}/{{engine}}/{{model}}/g{{n_gpus}}{{variant}}{{part}}.tsv"
        conda:
            sweep_env
        threads: sweep_threads
        resources:
            gpu=sweep_gpus,
            gpu_model=sweep_gpu_model,
            mem_mb=sweep_mem_mb,
            runtime=sweep_runtime,
        params:
            settings=sweep_settings,
        script:
            "../workflow/scripts/sweep.py"


rule aggregate:
    input:
        sweep_manifests(),
    output:
        OWN_TRIALS,
    log:
        f"{RUN_DIR}/logs/aggregate.log",
    conda:
        analysis_env()
    params:
        dataset=OWN,  # its records must all be of it: measured, or simulated for a rehearsal
    script:
        "../workflow/scripts/aggregate.py"


# What the trials ran on, from their records: commit, config hash, libraries, hardware, per sweep.
rule provenance:
    input:
        sweep_manifests(),
    output:
        json=report(f"{RUN_DIR}/provenance.json", caption="../workflow/report/provenance.rst", category="Provenance"),
        sweeps=report(
            f"{RUN_DIR}/provenance_sweeps.csv",
            caption="../workflow/report/provenance_sweeps.rst",
            category="Provenance",
        ),
    log:
        f"{RUN_DIR}/logs/provenance.log",
    conda:
        analysis_env()
    params:
        measured=MEASURED_SETTINGS,
    script:
        "../workflow/scripts/provenance.py"
