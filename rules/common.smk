# Config validation, the trial plan, and the input functions of every rule.
import os
import re
import sys

# The infpop package lives beside the Snakefile: importable here, in every job's scripts (also in
# conda envs and on cluster nodes, which re-read this file) and in the sweep's worker processes.
sys.path.insert(0, workflow.basedir)
os.environ.update(PYTHONPATH=os.pathsep.join(filter(None, [workflow.basedir, os.environ.get("PYTHONPATH")])))

from snakemake.exceptions import WorkflowError

from infpop.cluster import planning_problems
from infpop.config import BUILT_MODELS_DIR, ConfigError, load_config
from infpop.gguf_model import locate as gguf_locate
from infpop.grid import plan, trial_keys
from infpop.optimise.rq5 import applicable_directions
from infpop.optimise.tune import tune_space
from infpop.paper import HARDWARE as PAPER_HARDWARE


try:
    CONFIG = load_config(config, config_file=", ".join(map(str, workflow.configfiles)) or None)
except ConfigError as exc:
    sys.exit(f"InfPop: {exc}")

RESULTS = CONFIG["results_dir"]
SWEEPS, EXCLUDED = plan(CONFIG)


def _resource_overrides(rule):
    """Resources set on a rule from outside (--set-resources, a profile's set-resources)."""
    values = {}
    for name, resource in dict(workflow.resource_settings.overwrite_resources.get(rule, {})).items():
        try:
            values[name] = getattr(resource, "value", resource)
        except ValueError:  # evaluated per job: a bare name or number is checked, an expression is not
            raw = str(getattr(resource, "raw", ""))
            if re.fullmatch(r"[A-Za-z0-9_.]+", raw):
                values[name] = raw
    return values


# What the profile asks of the cluster, against the plan: a sweep no node can take stops here.
_CLUSTER_PROBLEMS = planning_problems(CONFIG, SWEEPS, sys.argv, _resource_overrides("sweep"))
if _CLUSTER_PROBLEMS:
    sys.exit("InfPop: the cluster cannot run this plan:\n" + "\n".join(f"  {p}" for p in _CLUSTER_PROBLEMS))
PLAN_FILE = f"{RESULTS}/plan.csv"
MEASURED_TRIALS = f"{RESULTS}/measured/trials.csv"
PAPER_TRIALS = f"{RESULTS}/paper/trials.csv"
PAPER_REFERENCE = f"{workflow.basedir}/configs/paper_reference.csv"
PROVENANCE = f"{RESULTS}/provenance.json"
PROVENANCE_SWEEPS = f"{RESULTS}/provenance_sweeps.csv"
REPORT = f"{RESULTS}/report.html"
# Datasets analysed: our measurements and, unless turned off, the paper's published trials.
DATASETS = ["measured"] + (["paper"] if CONFIG["paper_data"]["replay"] else [])
BENCHMARK_FILE = f"resources/data/{CONFIG['benchmark']['name']}.jsonl.gz"
BUILT_MODEL_DIR = f"{BUILT_MODELS_DIR}/{{model}}"  # where models with `build` go (checked by load_config)
# What the measurements depend on (the sweeps' and the plan's params): changing the analysis or
# the replay settings must not make Snakemake re-run the measurement jobs.
MEASUREMENT_CONFIG = {k: v for k, v in CONFIG.items() if k not in ("analysis", "paper_data", "optimisation")}
# What the replayed optimisation reads (live tuning's settings apart), and what live tuning reads.
OPTIMISATION_REPLAY_CONFIG = {k: v for k, v in CONFIG["optimisation"].items() if k != "tune"}
TUNE_CONFIG = {**MEASUREMENT_CONFIG, "optimisation": {"tune": CONFIG["optimisation"]["tune"]}}
# One folder per sweep; its manifest (the sweep rule's output) lists the trial JSONs beside it.
SWEEP_MANIFEST = f"{RESULTS}/trials/{{hardware}}/{{engine}}/{{model}}/g{{n_gpus}}/sweep.json"


wildcard_constraints:
    dataset="measured|paper",
    hardware="|".join(CONFIG["hardware"]),
    engine="|".join(CONFIG["engines"]),
    model="|".join(CONFIG["models"]),
    n_gpus=r"\d+",


def sweep_manifests():
    """The manifest of every sweep in the plan (the sweep rule's outputs)."""
    return [SWEEP_MANIFEST.format(**vars(sweep)) for sweep in SWEEPS]


# Only models with `build` are built (a local model without it must exist already).
BUILT_MODELS_PATTERN = "|".join(re.escape(k) for k, s in CONFIG["models"].items() if "build" in s) or "(?!)"


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


def model_input(model):
    """A local model directory is an input of the jobs that run it (built first when it has `build`)."""
    spec = CONFIG["models"][model]
    return [spec["path"]] if "path" in spec else []


def sweep_model_input(wildcards):
    return model_input(wildcards.model)


def sweep_hardware(wildcards):
    return CONFIG["hardware"][wildcards.hardware]


def analysis_env():
    return f"{workflow.basedir}/envs/analysis.yaml"


def sweep_env(wildcards):
    """Each engine runs in its own pinned environment (with --sdm conda)."""
    return f"{workflow.basedir}/envs/{wildcards.engine}.yaml"


def sweep_threads(wildcards):
    """A local CPU sweep takes every core: two CPU measurements sharing cores would distort both.
    A local GPU sweep takes one core when the run declares its GPU count (`resources: gpu=N`, as
    profiles/local does): the scheduler then never hands out more GPUs than there are, and each
    sweep claims its own devices (infpop/devices.py). Without it, GPU sweeps take every core too
    and run one at a time. On a cluster the profile sets the cores per sweep job (set-threads)."""
    if sweep_hardware(wildcards)["kind"] == "gpu" and "gpu" in workflow.global_resources:
        return 1
    return workflow.cores


def sweep_gpus(wildcards):
    """GPUs this sweep needs (a resource, so schedulers and clusters hand them out)."""
    return int(wildcards.n_gpus) if sweep_hardware(wildcards)["kind"] == "gpu" else 0


def sweep_gpu_model(wildcards):
    """The GPU model a sweep needs (None, unset, on the CPU: SLURM is then asked for no GPU)."""
    return sweep_hardware(wildcards).get("gpu_model")


def model_mem_mb(model, attempt):
    """Host memory: 4 GiB plus the model's weights at 2 bytes a parameter (more for float32),
    times the attempt: a job killed for memory gets more on its retry."""
    bytes_per_param = 4 if CONFIG["dtype"] == "float32" else 2
    billions = CONFIG["models"][model].get("params_billion") or 0
    return int((4096 + billions * bytes_per_param * 1024) * attempt)


def sweep_mem_mb(wildcards, attempt):
    return model_mem_mb(wildcards.model, attempt)


def sweep_runtime(wildcards, attempt):
    """Minutes: every trial at its time limit plus the loads, doubled on each retry."""
    seconds = CONFIG["load_timeout_s"] + len(trial_keys(CONFIG)) * CONFIG["trial_timeout_s"]
    return int(seconds / 60 * attempt) + 1


# -- analysis ------------------------------------------------------------------------------------


def dataset_trials(wildcards):
    """The tidy trials table a dataset's analyses read."""
    return PAPER_TRIALS if wildcards.dataset == "paper" else MEASURED_TRIALS


def dataset_hardware(dataset):
    return sorted(set(PAPER_HARDWARE.values())) if dataset == "paper" else list(CONFIG["hardware"])


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


def rq_targets(rq, datasets=None):
    """The outputs of one research question (rq1 .. rq4, discussion) for the datasets."""
    targets = []
    for dataset in datasets or DATASETS:
        base = f"{RESULTS}/{dataset}"
        if rq == "rq1":
            targets += [f"{base}/rq1/landscape_features.csv"]
        elif rq == "rq2":
            targets += [f"{base}/rq2/anova.csv", f"{base}/rq2/tukey.csv"]
            for hardware in dataset_hardware(dataset):
                targets += [f"{base}/rq2/table2_{hardware}.csv", f"{base}/rq2/gpu_scaling_{hardware}"]
        elif rq == "rq3":
            targets += [f"{base}/rq3/anova.csv", f"{base}/rq3/wilcoxon_engines.csv"]
        elif rq == "rq4":
            targets += [f"{base}/rq4/wilcoxon_hardware.csv", f"{base}/rq4/improvement.csv"]
        elif rq == "discussion":
            targets += [f"{base}/discussion/correlations.csv"]
        elif rq == "rq5":
            targets += [f"{base}/rq5/efficiency.csv"]
            if rq5_directions(dataset):
                targets += [f"{base}/rq5/summary.csv"]
    return targets


def analysis_targets():
    """Every analysis output: RQ1-RQ5, the discussion, the paper comparison, live tuning, and the
    provenance of the measurements (in the report too)."""
    targets = [t for rq in ("rq1", "rq2", "rq3", "rq4", "discussion", "rq5") for t in rq_targets(rq)]
    targets += [PROVENANCE, PROVENANCE_SWEEPS]
    if "paper" in DATASETS:
        targets.append(f"{RESULTS}/paper/comparison.csv")
    return targets + tune_targets()


def comparison_inputs(wildcards):
    """The replay's tables the paper's stated numbers are checked against."""
    paper = f"{RESULTS}/paper"
    inputs = {
        "reference": PAPER_REFERENCE,
        "table2": f"{paper}/rq2/table2_a100.csv",
        "rq2_anova": f"{paper}/rq2/anova.csv",
        "rq3_wilcoxon": f"{paper}/rq3/wilcoxon_engines.csv",
        "rq4_wilcoxon": f"{paper}/rq4/wilcoxon_hardware.csv",
        "rq4_improvement": f"{paper}/rq4/improvement.csv",
        "rq1_features": f"{paper}/rq1/landscape_features.csv",
        "correlations": f"{paper}/discussion/correlations.csv",
    }
    if rq5_directions("paper"):
        inputs["rq5_summary"] = f"{paper}/rq5/summary.csv"
    return inputs


# -- optimisation --------------------------------------------------------------------------------


def all_cores(wildcards):
    """Every core of the run: the replayed searches are independent and spread over them; live
    tuning's trials, like a CPU sweep's, must not share them. (1 where the run has no core count:
    the report's Snakemake run only reads the rules.)"""
    try:
        return workflow.cores
    except WorkflowError:
        return 1


def rq5_directions(dataset):
    """The configured hardware changes whose two hardware labels the dataset has."""
    return applicable_directions(CONFIG["optimisation"]["rq5"]["directions"], set(dataset_hardware(dataset)))


def rq5_modes(wildcards):
    """The faithful mode replays the appendix script on the paper's data only."""
    modes = CONFIG["optimisation"]["rq5"]["modes"]
    return modes if wildcards.dataset == "paper" else [m for m in modes if m != "faithful"] or ["corrected"]


TUNE_ENGINES = CONFIG["optimisation"]["tune"]["engines"]


def tune_targets():
    return [f"{RESULTS}/tune/recommendations.csv"]


def tune_env():
    """Live tuning runs both engines and the optimisers in one job: an environment of its own."""
    return f"{workflow.basedir}/envs/tune.yaml"


def tune_model_input(wildcards):
    return model_input(CONFIG["optimisation"]["tune"]["model"])


def _tune_hardware():
    return CONFIG["hardware"][CONFIG["optimisation"]["tune"]["hardware"]]


def tune_gpus(wildcards):
    """The most GPUs a tuning trial may use (a resource, like a sweep's)."""
    if _tune_hardware()["kind"] != "gpu":
        return 0
    return max(g for engine in TUNE_ENGINES for g in tune_space(CONFIG, engine).n_gpus)


def tune_gpu_model(wildcards):
    """As a sweep's: unset on the CPU, so SLURM is asked for no GPU."""
    return _tune_hardware().get("gpu_model")


def tune_mem_mb(wildcards, attempt):
    return model_mem_mb(CONFIG["optimisation"]["tune"]["model"], attempt)


def tune_runtime(wildcards, attempt):
    """Minutes: a model load per GPU count and every evaluation at its time limit, doubled on retry."""
    tune = CONFIG["optimisation"]["tune"]
    loads = sum(len(tune["n_gpus"] or CONFIG["n_gpus"][engine]) for engine in TUNE_ENGINES)
    seconds = loads * CONFIG["load_timeout_s"] + len(TUNE_ENGINES) * tune["budget"] * CONFIG["trial_timeout_s"]
    return int(seconds / 60 * attempt) + 1
