# The input, parameter and resource functions of each stage's rules (rules/<stage>.smk), and the
# settings those rules read.
import re

from infpop.data.gguf_model import locate as gguf_locate
from infpop.measure.grid import DEFAULT_SETTINGS, Sweep, sweep_engine_args
from infpop.optimise.rq5 import applicable_directions
from infpop.serve.plan import ServeJob, settings_of

# -- data ------------------------------------------------------------------------------------------


def _model_keys_pattern(keys):
    """A `model` wildcard matching these model keys only (nothing when there are none)."""
    return "|".join(re.escape(key) for key in keys) or "(?!)"


def _gguf_source(spec):
    """The GGUF file on this machine (load_config has checked that it is installed)."""
    return gguf_locate(spec["gguf"]["package"], spec["gguf"]["file"])


def built_model_input(wildcards):
    """The builder's input file: the benchmark text (tiny) or the GGUF file itself (gguf), so a
    re-installed package rebuilds the model."""
    spec = CONFIG["models"][wildcards.model]
    if spec["build"] == "gguf":
        return {"gguf": str(_gguf_source(spec).path)}
    return {"benchmark": BENCHMARK_FILE}


def built_model_settings(wildcards):
    """What the build depends on besides its input file (a change re-runs it): the seed (tiny),
    the package, its version and the file's path inside it (gguf; not this machine's path)."""
    spec = CONFIG["models"][wildcards.model]
    if spec["build"] == "gguf":
        return {"build": "gguf", "source": _gguf_source(spec).identity()}
    return {"build": spec["build"], "seed": spec["seed"]}


def model_hf_id(wildcards):
    return CONFIG["models"][wildcards.model]["hf_id"]


def model_revision(wildcards):
    """The revision asked for (None: the main branch). A changed revision re-runs the download."""
    return CONFIG["models"][wildcards.model].get("revision")


# -- measure ---------------------------------------------------------------------------------------


def sweep_job(wildcards):
    """The sweep job of a sweep rule's wildcards (its trials: all, or one max_new_tokens's)."""
    sweep = Sweep(
        wildcards.hardware,
        wildcards.engine,
        wildcards.model,
        int(wildcards.n_gpus),
        variant_settings(wildcards.variant),
    )
    return sizing.SweepJob(sweep, sizing.part_tokens(wildcards.part))


def variant_settings(variant):
    """The engine settings' label of a sweep's `variant` wildcard ('' for the default)."""
    return variant.removeprefix("/") or DEFAULT_SETTINGS


def sweep_settings(wildcards):
    """What the sweep job's trials depend on: the measurement settings (its engine settings' engine
    arguments) and its share of the grid."""
    job = sweep_job(wildcards)
    return {
        **measured_with(wildcards.hardware, wildcards.engine, wildcards.model),
        "engine_args": sweep_engine_args(CONFIG, job.sweep),
        "batch_sizes": CONFIG["batch_sizes"],
        "max_new_tokens": [job.max_new_tokens] if job.max_new_tokens else CONFIG["max_new_tokens"],
    }


def sweep_model_input(wildcards):
    return model_input(wildcards.model)


def rehearsal_input(wildcards):
    """The trials table a rehearsal answers from (nothing for a measurement)."""
    return [REHEARSAL_TABLE] if REHEARSAL else []


def sweep_env(wildcards):
    return measuring_env(wildcards.hardware, wildcards.engine)


def sweep_threads(wildcards):
    """A local CPU sweep takes every core: two CPU measurements sharing cores would distort both.
    A local GPU sweep takes one core when the run declares its GPU count (`resources: gpu=N`, as
    profiles/local does): the scheduler then never hands out more GPUs than there are, and each
    sweep claims its own devices (infpop/measure/devices.py). Without it, GPU sweeps take every
    core too and run one at a time (all_cores: on a cluster, the cores set-threads gives sweeps).
    A rehearsing sweep is one Python process on one core: as many run at once as there are cores."""
    if REHEARSAL:
        return 1
    if CONFIG["hardware"][wildcards.hardware]["kind"] == "gpu" and "gpu" in workflow.global_resources:
        return 1
    return all_cores(wildcards)


def sweep_gpus(wildcards):
    return job_gpus(wildcards.hardware, int(wildcards.n_gpus))


def sweep_gpu_model(wildcards):
    return job_gpu_model(wildcards.hardware)


def sweep_mem_mb(wildcards, attempt):
    """Host memory (infpop/cluster/sizing.py): the weights plus the engine's processes (vLLM: one
    per GPU and the engine core)."""
    estimate = sizing.host_memory_mb(CONFIG, wildcards.model, wildcards.engine, int(wildcards.n_gpus))
    return job_request(estimate, attempt, wildcards.hardware, int(wildcards.n_gpus), "max_mem_mb")


def sweep_runtime(wildcards, attempt):
    """Minutes: the config's runtime_estimate for the job's trials and load."""
    estimate = sizing.sweep_minutes(CONFIG, sweep_job(wildcards))
    return job_request(estimate, attempt, wildcards.hardware, int(wildcards.n_gpus), "max_runtime")


# -- a budgeted run (budget.run) ----------------------------------------------------------------------


def budget_models_input(share):
    return sorted({path for sweep in share.sweeps for path in model_input(sweep.model)})


def budget_manifests(share):
    """The manifests of the job's sweeps (each sweep's, as a sweep job writes it)."""
    return [sweep_manifest(sizing.SweepJob(sweep)) for sweep in share.sweeps]


def budget_ledger(share):
    return f"{TRIALS_DIR}/{share.hardware}/{share.engine}/budget.json"


def budget_settings(share):
    """What the job's choices and trials depend on: each model's measurement settings, the grid
    and the budget (without the study's seeds)."""
    return {
        "measured": {
            m: measured_with(share.hardware, share.engine, m) for m in sorted({s.model for s in share.sweeps})
        },
        "grid": {key: CONFIG[key] for key in ("n_gpus", "batch_sizes", "max_new_tokens", "analysis")},
        "budget": {k: v for k, v in CONFIG["budget"].items() if k != "study"},
        "runtime_estimate": CONFIG["runtime_estimate"],
    }


def budget_gpus(share):
    """The most GPUs one of the job's trials uses (they run one at a time)."""
    return job_gpus(share.hardware, max(sweep.n_gpus for sweep in share.sweeps))


def budget_mem_mb(share):
    def mem_mb(wildcards, attempt):
        estimate = max(sizing.host_memory_mb(CONFIG, s.model, s.engine, s.n_gpus) for s in share.sweeps)
        return job_request(estimate, attempt, share.hardware, budget_gpus(share), "max_mem_mb")

    return mem_mb


def budget_runtime(share):
    """Minutes: the share's device-seconds spent at the job's fewest GPUs (its longest wall time),
    with a load per sweep, x the safety factor."""

    def runtime(wildcards, attempt):
        loads = sum(sizing.load_seconds(CONFIG, s.hardware, s.engine, s.model) for s in share.sweeps)
        wall = share.seconds / min(s.n_gpus for s in share.sweeps) + loads
        estimate = CONFIG["runtime_estimate"]["safety_factor"] * wall / 60
        return job_request(estimate, attempt, share.hardware, budget_gpus(share), "max_runtime")

    return runtime


# -- analysis --------------------------------------------------------------------------------------


def _paper_config():
    path = CONFIG["paper_data"]["metadata_config"]
    return load_config(path if os.path.isabs(path) else f"{workflow.basedir}/{path}")


def dataset_metadata(wildcards):
    """Table I metadata (parameters, HumanEval pass@1) of the dataset's models."""
    models = _paper_config()["models"] if wildcards.dataset == "paper" else CONFIG["models"]
    return [
        {"model": key, "params_billion": spec["params_billion"], "humaneval_pass1": spec["humaneval_pass1"]}
        for key, spec in models.items()
    ]


def comparison_inputs(wildcards):
    """The replay's tables the paper's stated numbers are checked against."""

    def paper(output, **wildcards):
        return expand(output, dataset="paper", **wildcards)[0]

    inputs = {
        "reference": f"{workflow.basedir}/configs/paper_reference.csv",
        "table2": paper(rules.rq2_table2.output.csv, hardware="a100"),
        "rq2_anova": paper(rules.rq2_anova.output.anova),
        "rq3_wilcoxon": paper(rules.rq3_batch.output.wilcoxon),
        "rq4_wilcoxon": paper(rules.rq4_hardware.output.wilcoxon),
        "rq4_improvement": paper(rules.rq4_hardware.output.improvement),
        "rq1_features": paper(rules.rq1_landscapes.output.features),
        "correlations": paper(rules.discussion.output[0]),
    }
    if rq5_directions("paper"):
        inputs["rq5_summary"] = paper(rules.optimise_rq5.output.summary)
    return inputs


def conclusions_inputs(wildcards):
    """The dataset's trials, the paper's statements and, where the paper's data is replayed, its
    trials: each landscape's optimum is checked against theirs."""
    inputs = {
        "trials": dataset_trials(wildcards),
        "paper_reference": f"{workflow.basedir}/configs/paper_reference.csv",
        "paper_findings": f"{workflow.basedir}/configs/paper_findings.csv",
    }
    if "paper" in DATASETS:
        inputs["reference"] = PAPER_TRIALS
    return inputs


def conclusions_reference_settings(wildcards):
    """The analysis choices of the reference (the paper's data), when there is one."""
    return dataset_analysis_settings("paper") if "paper" in DATASETS else None


def cost_cpu_hardware(wildcards):
    """The hardware whose sweeps hold one device whatever their n_gpus (the paper's are GPUs)."""
    if wildcards.dataset == "paper":
        return []
    return [name for name, spec in CONFIG["hardware"].items() if spec["kind"] == "cpu"]


def cost_source(wildcards):
    """Where a dataset's costs come from, as its summary says."""
    if wildcards.dataset == "paper":
        return (
            "From the published throughput: 1,033 prompts x max_new_tokens / throughput x n_gpus GPU-seconds "
            "per finished trial. How long a failed trial ran, and the model loads, are not published."
        )
    if wildcards.dataset == "rehearsal":
        return (
            "From the rehearsal's simulated records, on its virtual clock (the trials table's throughputs): each "
            "trial's wall time x the devices its sweep would hold (cost.device_seconds); each simulated load's "
            "load_seconds x its sweep's devices."
        )
    return (
        "From the trial records: each trial's wall time x the devices it held (cost.device_seconds); each "
        "model load's load_seconds x its sweep's devices. A record made before costs were recorded has none."
    )


# -- optimise --------------------------------------------------------------------------------------


# What the replayed optimisation reads (live tuning's settings apart), and what live tuning reads.
_OBJECTIVE = {k: CONFIG["optimise"][k] for k in ("objective", "latency_p95_limit_s")}
# The RQ5 replay depends on its section and the objective; the optimiser study on its own section,
# the objective and the RQ5 directions (its priors): neither on the other's settings.
RQ5_SETTINGS = {**_OBJECTIVE, "rq5": CONFIG["optimise"]["rq5"]}
STUDY_SETTINGS = {
    **_OBJECTIVE,
    "study": CONFIG["optimise"]["study"],
    "rq5": {"directions": CONFIG["optimise"]["rq5"]["directions"]},
}
TUNE = CONFIG["optimise"]["tune"]
# Live tuning's trials depend on its section and on how each tuned engine measures.
TUNE_SETTINGS = {"tune": TUNE, **{e: measured_with(TUNE["hardware"], e, TUNE["model"]) for e in TUNE["engines"]}}


def rq5_directions(dataset):
    """The configured hardware changes whose two hardware labels the dataset has."""
    return applicable_directions(CONFIG["optimise"]["rq5"]["directions"], set(dataset_hardware(dataset)))


def rq5_modes(wildcards):
    """The faithful mode replays the appendix script on the paper's data only."""
    modes = CONFIG["optimise"]["rq5"]["modes"]
    return modes if wildcards.dataset == "paper" else [m for m in modes if m != "faithful"] or ["corrected"]


def tune_model_input(wildcards):
    return model_input(TUNE["model"])


def tune_sweeps(wildcards):
    """Live tuning runs after the sweeps of its hardware and model: it reuses their trials, and
    two processes measuring on the same devices would disturb each other."""
    return sweep_manifests(TUNE["hardware"], TUNE["model"])


def tune_gpus(wildcards):
    """The most GPUs a tuning trial may use."""
    return job_gpus(TUNE["hardware"], max(g for counts in TUNE_GPU_COUNTS.values() for g in counts))


def tune_gpu_model(wildcards):
    return job_gpu_model(TUNE["hardware"])


def tune_mem_mb(wildcards, attempt):
    """As a sweep's, for the engine and GPU count that need the most."""
    estimate = sizing.tune_memory_mb(CONFIG, TUNE_GPU_COUNTS)
    return job_request(estimate, attempt, TUNE["hardware"], tune_gpus(wildcards), "max_mem_mb")


def tune_runtime(wildcards, attempt):
    """Minutes: a model load per engine and GPU count, and `budget` evaluations per engine."""
    estimate = sizing.tune_minutes(CONFIG, TUNE_GPU_COUNTS)
    return job_request(estimate, attempt, TUNE["hardware"], tune_gpus(wildcards), "max_runtime")


# -- crosscheck ------------------------------------------------------------------------------------

CROSSCHECK = CONFIG["crosscheck"]
CROSSCHECK_SETTINGS = {
    "crosscheck": CROSSCHECK,
    **{e: measured_with(CROSSCHECK["hardware"], e, CROSSCHECK["model"], sampled=False) for e in CROSSCHECK["engines"]},
}


def crosscheck_model_input(wildcards):
    return model_input(CROSSCHECK["model"])


def crosscheck_sweeps(wildcards):
    """After the sweeps of its hardware and model, for the same reason as live tuning."""
    return sweep_manifests(CROSSCHECK["hardware"], CROSSCHECK["model"])


def crosscheck_gpus(wildcards):
    return job_gpus(CROSSCHECK["hardware"], CROSSCHECK["n_gpus"])


def crosscheck_gpu_model(wildcards):
    return job_gpu_model(CROSSCHECK["hardware"])


def crosscheck_mem_mb(wildcards, attempt):
    """As a sweep's, for the engine that needs the most."""
    estimate = max(
        sizing.host_memory_mb(CONFIG, CROSSCHECK["model"], engine, CROSSCHECK["n_gpus"])
        for engine in CROSSCHECK["engines"]
    )
    return job_request(estimate, attempt, CROSSCHECK["hardware"], CROSSCHECK["n_gpus"], "max_mem_mb")


def crosscheck_runtime(wildcards, attempt):
    estimate = sizing.crosscheck_minutes(CONFIG)
    return job_request(estimate, attempt, CROSSCHECK["hardware"], CROSSCHECK["n_gpus"], "max_runtime")


# -- serve -----------------------------------------------------------------------------------------

SERVE = CONFIG["serve"] or {}
# The serving plan depends on the section and on what the grid's exclusions read; the tables on how
# the records' requests become measures (the SLO, the saturation tolerance).
SERVE_PLAN_SETTINGS = {"serve": SERVE, **{key: CONFIG[key] for key in ("engines", "hardware", "models")}}
SERVE_MEASURE_SETTINGS = {key: SERVE.get(key) for key in ("slo", "saturation_tolerance")}


def serve_job(wildcards):
    return ServeJob(wildcards.hardware, wildcards.engine, wildcards.model, int(wildcards.n_gpus), wildcards.settings)


def serve_manifests():
    """The manifest of every server in the serving plan (the serve rule's outputs)."""
    return [SERVE_MANIFEST.format(**vars(job)) for job in SERVE_JOBS]


def serve_settings(wildcards):
    """What a server's records depend on: how the engine measures, the server's arguments and the
    request stream's settings (not the SLO, which only the tables read; not the time limits)."""
    job = serve_job(wildcards)
    load = ("request_rates", "max_concurrency", "requests", "output_tokens", "burstiness", "seed", "warmup_requests")
    return {
        "model": {k: v for k, v in CONFIG["models"][job.model].items() if k not in MODEL_METADATA},
        "hardware": CONFIG["hardware"][job.hardware],
        "dtype": CONFIG["dtype"],
        "benchmark": CONFIG["benchmark"]["name"],
        "retry_failed": CONFIG["retry_failed"],
        "server_arguments": settings_of(CONFIG, job).arguments,
        "load": {key: SERVE[key] for key in (*load, "repetitions")},
        "harnesses": SERVE["harnesses"][job.engine],
    }


def serve_model_input(wildcards):
    return model_input(wildcards.model)


def serve_env(wildcards):
    """Both engines' environment (live tuning's): the server's engine, and vLLM's serving benchmark
    and transformers' server's web stack beside it."""
    return measuring_env(wildcards.hardware, "tune")


def serve_mem_mb(wildcards, attempt):
    return server_mem_mb(serve_job(wildcards), attempt)


def server_mem_mb(job, attempt):
    """A server's host memory (as a sweep's: the weights and the engine's processes)."""
    estimate = sizing.host_memory_mb(CONFIG, job.model, job.engine, job.n_gpus)
    return job_request(estimate, attempt, job.hardware, job.n_gpus, "max_mem_mb")


SERVE_TUNING = SERVE.get("tuning")
LIVE_TUNING = bool(SERVE_TUNING) and SERVE_TUNING["mode"] == "live"
# The comparison depends on its section and how records become measures; live, also on everything
# the servers' load points depend on.
SERVE_TUNING_SETTINGS = {
    "tuning": SERVE_TUNING,
    "measures": SERVE_MEASURE_SETTINGS,
    "plan": SERVE_PLAN_SETTINGS if LIVE_TUNING else None,
}


def serve_tuning_input(wildcards):
    """Replayed: the serving jobs' records (their manifests). Live: what the servers need."""
    if LIVE_TUNING:
        return {
            "benchmark": BENCHMARK_FILE,
            "models": [path for model in SERVE["models"] for path in model_input(model)],
        }
    return {"manifests": serve_manifests()}


def serve_tuning_env(wildcards):
    """Live: both engines' measuring environment of the first hardware served; replayed: analysis."""
    return measuring_env(SERVE["hardware"][0], "tune") if LIVE_TUNING else analysis_env()


# Live, the comparison runs vLLM's servers one at a time, on a compute node: the GPUs and memory of
# the largest, the time of all of them. Replayed, it is an analysis and claims nothing (a local rule).
TUNED_SERVERS = [job for job in SERVE_JOBS if job.engine == "vllm"] if LIVE_TUNING else []


def serve_tuning_mem_mb(wildcards, attempt):
    """As the largest vLLM server's serving job."""
    job = max(TUNED_SERVERS, key=lambda j: sizing.host_memory_mb(CONFIG, j.model, j.engine, j.n_gpus))
    return server_mem_mb(job, attempt)


def serve_tuning_runtime(wildcards, attempt):
    """Minutes: both algorithms over every vLLM server (sizing.serve_tuning_minutes)."""
    job = max(TUNED_SERVERS, key=lambda j: j.n_gpus)
    estimate = sizing.serve_tuning_minutes(CONFIG, TUNED_SERVERS)
    return job_request(estimate, attempt, job.hardware, job.n_gpus, "max_runtime")


SERVE_TUNING_RESOURCES = (
    {
        "gpu": max(job_gpus(job.hardware, job.n_gpus) for job in TUNED_SERVERS),
        "gpu_model": lambda wildcards: job_gpu_model(SERVE["hardware"][0]),
        "mem_mb": serve_tuning_mem_mb,
        "runtime": serve_tuning_runtime,
    }
    if TUNED_SERVERS
    else {}
)


def serve_runtime(wildcards, attempt):
    """Minutes: a server start, and every load point (its requests at its rate, plus
    serve.load_point_estimate_s) x repetitions x load generators."""
    estimate = sizing.serve_minutes(CONFIG, serve_job(wildcards))
    return job_request(estimate, attempt, wildcards.hardware, int(wildcards.n_gpus), "max_runtime")
