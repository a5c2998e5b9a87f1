# The input, parameter and resource functions of each stage's rules (rules/<stage>.smk), and the
# settings those rules read.
import re

from infpop.data.gguf_model import locate as gguf_locate
from infpop.measure.grid import Sweep
from infpop.optimise.rq5 import applicable_directions

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
    sweep = Sweep(wildcards.hardware, wildcards.engine, wildcards.model, int(wildcards.n_gpus))
    return sizing.SweepJob(sweep, sizing.part_tokens(wildcards.part))


def sweep_model_input(wildcards):
    return model_input(wildcards.model)


def sweep_env(wildcards):
    return measuring_env(wildcards.hardware, wildcards.engine)


def sweep_threads(wildcards):
    """A local CPU sweep takes every core: two CPU measurements sharing cores would distort both.
    A local GPU sweep takes one core when the run declares its GPU count (`resources: gpu=N`, as
    profiles/local does): the scheduler then never hands out more GPUs than there are, and each
    sweep claims its own devices (infpop/measure/devices.py). Without it, GPU sweeps take every
    core too and run one at a time (all_cores: on a cluster, the cores set-threads gives sweeps)."""
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


# -- optimise --------------------------------------------------------------------------------------


# What the replayed optimisation reads (live tuning's settings apart), and what live tuning reads.
OPTIMISE_REPLAY_CONFIG = {k: v for k, v in CONFIG["optimise"].items() if k != "tune"}
TUNE = CONFIG["optimise"]["tune"]
TUNE_CONFIG = {**MEASUREMENT_CONFIG, "optimise": {"tune": TUNE}}


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
CROSSCHECK_CONFIG = {**MEASUREMENT_CONFIG, "crosscheck": CROSSCHECK}


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
