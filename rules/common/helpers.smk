# What several stages' rules call: the sweeps' manifests, a model's input, the environments and
# resources of the jobs that measure, the datasets.


def sweep_manifests(hardware=None, model=None):
    """The manifest of every sweep job in the plan (the sweep rule's outputs), or of those of one
    hardware and model."""
    return [
        SWEEP_MANIFEST.format(**vars(job.sweep), part=job.part)
        for job in CLUSTER.jobs
        if hardware in (None, job.sweep.hardware) and model in (None, job.sweep.model)
    ]


def model_input(model):
    """What the jobs that run a model need first: a local model's directory (built first when it
    has `build`), or a hub model's download manifest (downloaded first)."""
    spec = CONFIG["models"][model]
    return [spec["path"]] if "path" in spec else [MODEL_MANIFEST.format(model=model)]


def analysis_env():
    return f"{workflow.basedir}/envs/analysis.yaml"


def measuring_env(hardware, role):
    """The pinned environment (with --sdm conda) of a job that measures on `hardware`: an engine's
    (role hf or vllm) or both engines' (tune), in the build the hardware names (`environment:
    volta`, for GPUs the standard builds have no kernels for), else the standard one."""
    return f"{workflow.basedir}/envs/{conda_env_name(CONFIG['hardware'][hardware], role)}.yaml"


def job_gpus(hardware, n_gpus):
    """GPUs a measuring job needs, as a resource (schedulers and clusters hand them out): none on
    the CPU."""
    return n_gpus if CONFIG["hardware"][hardware]["kind"] == "gpu" else 0


def job_gpu_model(hardware):
    """The GPU model a measuring job needs (None, unset, on the CPU: SLURM is then asked for no GPU)."""
    return CONFIG["hardware"][hardware].get("gpu_model")


def job_request(estimate, attempt, hardware, n_gpus, limit):
    """What a measuring job asks for (runtime minutes, mem_mb) on its attempt: the estimate times
    the attempt, never above the limit (max_runtime, max_mem_mb) of the partition it goes to."""
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
    return PAPER_TRIALS if wildcards.dataset == "paper" else MEASURED_TRIALS


def dataset_hardware(dataset):
    return sorted(set(PAPER_HARDWARE.values())) if dataset == "paper" else list(CONFIG["hardware"])


def analysis_settings(wildcards):
    """The analysis choices of a dataset. Our repetitions are replicates (by default); the paper's
    published duplicates are re-runs of a sweep, not repetitions: its replay keeps the last, as
    the paper did."""
    if wildcards.dataset == "paper":
        return {**CONFIG["analysis"], "duplicates": "last"}
    return CONFIG["analysis"]
