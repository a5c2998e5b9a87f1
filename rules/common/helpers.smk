# What several stages' rules call: the sweeps' manifests, a model's input, the environments and
# resources of the jobs that measure, what their measurements depend on, the datasets.

#: A model entry's Table I metadata: no measurement depends on it.
MODEL_METADATA = ("params_billion", "humaneval_pass1")


def sweep_manifest(job):
    """A sweep job's manifest (a whole sweep's, where a budgeted job writes it)."""
    return SWEEP_MANIFEST.format(**vars(job.sweep), variant=job.sweep.variant, part=job.part)


def sweep_manifests(hardware=None, model=None):
    """The manifest of every sweep job in the plan (the sweep rule's outputs; in a budgeted run,
    one per sweep, which the budgeted jobs write), or of those of one hardware and model."""
    if BUDGET_SHARES:
        jobs = [sizing.SweepJob(sweep) for share in BUDGET_SHARES for sweep in share.sweeps]
    else:
        jobs = CLUSTER.jobs
    return [
        sweep_manifest(job)
        for job in jobs
        if hardware in (None, job.sweep.hardware) and model in (None, job.sweep.model)
    ]


def model_input(model):
    """What the jobs that run a model need first: a local model's directory (built first when it
    has `build`), or a hub model's download manifest (downloaded first); nothing in a rehearsal,
    which loads no model."""
    if REHEARSAL:
        return []
    spec = CONFIG["models"][model]
    return [spec["path"]] if "path" in spec else [MODEL_MANIFEST.format(model=model)]


def measured_with(hardware, engine, model, sampled=True):
    """What a trial of `engine` on `hardware` and `model` depends on: the params of every job that
    measures (a change re-runs the job, which measures again the trials it changes; the reuse rule
    itself is infpop.measure.records'). Time limits, folders, the analysis, the optimisation and
    the report are not in it: changing them re-runs no measurement (the jobs read them from the
    run's config, snakemake.config). `sampled`: whether the job's trials follow
    budget.sequential (the cross-check's do not: it compares whole trials)."""
    settings = {
        "model": {k: v for k, v in CONFIG["models"][model].items() if k not in MODEL_METADATA},
        "hardware": CONFIG["hardware"][hardware],
        "engine_args": CONFIG["engine_args"].get(engine, {}),
        **{key: CONFIG[key] for key in ("dtype", "benchmark", "warmup", "repetitions", "oom_pruning", "retry_failed")},
    }
    if engine == "hf":
        settings["hf_offload"] = CONFIG["hf_offload"]
    if REHEARSAL:  # how a rehearsal answers (its table is an input of the jobs)
        settings["rehearsal"] = REHEARSAL
    if SEQUENTIAL and sampled:  # only when on: a run without it keeps its params (and its jobs)
        settings["sequential"] = SEQUENTIAL
    return settings


def _without_metadata(models):
    return {key: {k: v for k, v in spec.items() if k not in MODEL_METADATA} for key, spec in models.items()}


# The plan depends on the grid; the provenance on every setting a trial depends on.
GRID_SETTINGS = {
    "models": _without_metadata(CONFIG["models"]),
    **{key: CONFIG[key] for key in ("engines", "hardware", "n_gpus", "batch_sizes", "max_new_tokens", "repetitions")},
}
MEASURED_SETTINGS = {
    **GRID_SETTINGS,
    **{
        key: CONFIG[key]
        for key in ("dtype", "benchmark", "warmup", "oom_pruning", "retry_failed", "hf_offload", "engine_args")
    },
    **({"rehearsal": REHEARSAL} if REHEARSAL else {}),
    **({"sequential": SEQUENTIAL} if SEQUENTIAL else {}),
}
# The paper's published data, pinned (the import checks every file's sha256).
PAPER_APPENDIX = f"{APPENDIX_REPO}@{APPENDIX_COMMIT}"


def analysis_env():
    return f"{workflow.basedir}/envs/analysis.yaml"


def measuring_env(hardware, role):
    """The pinned environment (with --sdm conda) of a job that measures on `hardware`: an engine's
    (role hf or vllm) or both engines' (tune), in the build the hardware names (`environment:
    volta`, for GPUs the standard builds have no kernels for), else the standard one. A rehearsal
    runs no engine: the analysis environment holds what it needs."""
    if REHEARSAL:
        return analysis_env()
    return f"{workflow.basedir}/envs/{conda_env_name(CONFIG['hardware'][hardware], role)}.yaml"


def job_gpus(hardware, n_gpus):
    """GPUs a measuring job needs, as a resource (schedulers and clusters hand them out): none on
    the CPU, nor in a rehearsal (it simulates the GPUs)."""
    return n_gpus if CONFIG["hardware"][hardware]["kind"] == "gpu" and not REHEARSAL else 0


def job_gpu_model(hardware):
    """The GPU model a measuring job needs (None, unset, on the CPU or in a rehearsal: SLURM is
    then asked for no GPU)."""
    return None if REHEARSAL else CONFIG["hardware"][hardware].get("gpu_model")


def job_request(estimate, attempt, hardware, n_gpus, limit):
    """What a measuring job asks for (runtime minutes, mem_mb) on its attempt: the estimate times
    the attempt, never above the limit (max_runtime, max_mem_mb) of the partition it goes to. A
    rehearsing job asks for what simulating takes (rehearsal.job), on a partition without GPUs."""
    if REHEARSAL:
        estimate = REHEARSAL["job"]["runtime" if limit == "max_runtime" else "mem_mb"]
        room = CLUSTER.partitions.room(None, 0) if CLUSTER.partitions else None
        return sizing.request(estimate, attempt, getattr(room, limit) if room is not None else float("inf"))
    room = CLUSTER.room(CONFIG, hardware, n_gpus)
    return sizing.request(estimate, attempt, getattr(room, limit) if room is not None else float("inf"))


def all_cores(wildcards):
    """Every core of the run: for jobs whose work spreads over them, and measuring jobs, which must
    not share them. On a cluster a job has the cores the profile's set-threads gives its rule (1
    without): the count must be the same where the job is submitted and on the node, where
    Snakemake runs with all of the node's cores. (1 where the run has no core count: the report's
    Snakemake run only reads the rules.)"""
    if workflow.non_local_exec or workflow.remote_exec:
        return 1
    try:
        return workflow.cores
    except WorkflowError:
        return 1


def dataset_trials(wildcards):
    """The tidy trials table a dataset's analyses read."""
    return PAPER_TRIALS if wildcards.dataset == "paper" else OWN_TRIALS


def dataset_hardware(dataset):
    return sorted(set(PAPER_HARDWARE.values())) if dataset == "paper" else list(CONFIG["hardware"])


def dataset_analysis_settings(dataset):
    """The analysis choices of a dataset. Our repetitions are replicates (by default); the paper's
    published duplicates are re-runs of a sweep, not repetitions: its replay keeps the last, as
    the paper did."""
    if dataset == "paper":
        # ... and it has no engine settings beside the engines' defaults
        return {**CONFIG["analysis"], "duplicates": "last", "engine_settings": {}}
    return CONFIG["analysis"]


def analysis_settings(wildcards):
    return dataset_analysis_settings(wildcards.dataset)


def budget_study_table():
    """The trials table the budget study rehearses: the rehearsal's (rehearsal.trials), else the
    paper's published trials."""
    if CONFIG["rehearsal"] is not None and CONFIG["rehearsal"]["trials"] != "paper":
        return CONFIG["rehearsal"]["trials"]
    return PAPER_TRIALS


def budget_study_config():
    """The config's keys the budget study reads (infpop.budget.study.STUDY_KEYS), less the
    strategies a run would use (the study runs every one)."""
    from infpop.budget.study import STUDY_KEYS

    study = {key: CONFIG[key] for key in STUDY_KEYS}
    study["budget"] = {k: v for k, v in CONFIG["budget"].items() if k != "strategies"}
    return study
