# Config validation, the trial plan, and the input functions of every rule.
import os
import re
import sys

# The infpop package lives beside the Snakefile: importable here, in every job's scripts (also in
# conda envs and on cluster nodes, which re-read this file) and in the sweep's worker processes.
sys.path.insert(0, workflow.basedir)
os.environ.update(PYTHONPATH=os.pathsep.join(filter(None, [workflow.basedir, os.environ.get("PYTHONPATH")])))

from snakemake.exceptions import WorkflowError

from infpop import sizing
from infpop.cluster import plan_cluster
from infpop.config import BUILT_MODELS_DIR, ConfigError, conda_env_name, load_config
from infpop.gguf_model import locate as gguf_locate
from infpop.grid import Sweep, plan
from infpop.hub import manifest_path
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


def _tune_gpu_counts():
    """{engine: the GPU counts live tuning searches}."""
    return {engine: list(tune_space(CONFIG, engine).n_gpus) for engine in CONFIG["optimisation"]["tune"]["engines"]}


# What the profile asks of the cluster, against the plan: a sweep no node can take stops here. With
# a partitions file, a sweep estimated to outlast its partition becomes one job per max_new_tokens.
# (Relative paths on the command line: from where Snakemake was started, which --directory left.)
CLUSTER = plan_cluster(CONFIG, SWEEPS, sys.argv, _resource_overrides("sweep"), _tune_gpu_counts(),
                       roots=[os.environ.get("PWD"), workflow.basedir])
if CLUSTER.problems:
    sys.exit("InfPop: the cluster cannot run this plan:\n" + "\n".join(f"  {p}" for p in CLUSTER.problems))
PLAN_FILE = f"{RESULTS}/plan.csv"
MEASURED_TRIALS = f"{RESULTS}/measured/trials.csv"
PAPER_TRIALS = f"{RESULTS}/paper/trials.csv"
PAPER_REFERENCE = f"{workflow.basedir}/configs/paper_reference.csv"
PROVENANCE = f"{RESULTS}/provenance.json"
PROVENANCE_SWEEPS = f"{RESULTS}/provenance_sweeps.csv"
REPETITION_TABLES = [f"{RESULTS}/measured/repetitions/{name}" for name in ("configurations.csv", "noise.csv")]
REPORT = f"{RESULTS}/report.html"
# Datasets analysed: our measurements and, unless turned off, the paper's published trials.
DATASETS = ["measured"] + (["paper"] if CONFIG["paper_data"]["replay"] else [])
BENCHMARK_FILE = f"resources/data/{CONFIG['benchmark']['name']}.jsonl.gz"
BUILT_MODEL_DIR = f"{BUILT_MODELS_DIR}/{{model}}"  # where models with `build` go (checked by load_config)
# hf_id models are downloaded once into models_dir; each one's manifest is what jobs depend on.
MODELS_DIR = CONFIG["models_dir"]
HUB_MODELS = [key for key, spec in CONFIG["models"].items() if "hf_id" in spec]
MODEL_MANIFEST = str(manifest_path(MODELS_DIR, "{model}"))
# What the measurements depend on (the sweeps' and the plan's params): changing the analysis or
# the replay settings (or the jobs' runtime estimate) must not make Snakemake re-run the measurement jobs.
MEASUREMENT_CONFIG = {k: v for k, v in CONFIG.items()
                      if k not in ("analysis", "paper_data", "optimisation", "runtime_estimate")}
# What the replayed optimisation reads (live tuning's settings apart), and what live tuning reads.
OPTIMISATION_REPLAY_CONFIG = {k: v for k, v in CONFIG["optimisation"].items() if k != "tune"}
TUNE_CONFIG = {**MEASUREMENT_CONFIG, "optimisation": {"tune": CONFIG["optimisation"]["tune"]}}
# One folder per sweep; its manifest (the sweep rule's output) lists the trial JSONs beside it. A
# sweep split into jobs (`part` _t<max_new_tokens>, else empty) has a manifest per job.
SWEEP_MANIFEST = f"{RESULTS}/trials/{{hardware}}/{{engine}}/{{model}}/g{{n_gpus}}/sweep{{part}}.json"


wildcard_constraints:
    dataset="measured|paper",
    hardware="|".join(CONFIG["hardware"]),
    engine="|".join(CONFIG["engines"]),
    model="|".join(CONFIG["models"]),
    n_gpus=r"\d+",
    part=sizing.PART_PATTERN,


def sweep_manifests(hardware=None, model=None):
    """The manifest of every sweep job in the plan (the sweep rule's outputs), or of those of one
    hardware and model."""
    return [SWEEP_MANIFEST.format(**vars(job.sweep), part=job.part) for job in CLUSTER.jobs
            if hardware in (None, job.sweep.hardware) and model in (None, job.sweep.model)]


def sweep_job(wildcards):
    """The sweep job of a sweep rule's wildcards (its trials: all, or one max_new_tokens's)."""
    sweep = Sweep(wildcards.hardware, wildcards.engine, wildcards.model, int(wildcards.n_gpus))
    return sizing.SweepJob(sweep, sizing.part_tokens(wildcards.part))


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
    """What the jobs that run a model need first: a local model's directory (built first when it
    has `build`), or a hub model's download manifest (downloaded first)."""
    spec = CONFIG["models"][model]
    return [spec["path"]] if "path" in spec else [MODEL_MANIFEST.format(model=model)]


def hub_models_pattern():
    """The download rule's `model` wildcard: the hf_id models only (a regex that matches nothing
    when there are none)."""
    return "|".join(re.escape(key) for key in HUB_MODELS) or "(?!)"


def model_hf_id(wildcards):
    return CONFIG["models"][wildcards.model]["hf_id"]


def model_revision(wildcards):
    """The revision asked for (None: the main branch). A changed revision re-runs the download."""
    return CONFIG["models"][wildcards.model].get("revision")


def config_files():
    """The config file(s) of this run, for messages naming the key to fix."""
    return ", ".join(map(str, workflow.configfiles)) or None


def sweep_model_input(wildcards):
    return model_input(wildcards.model)


def sweep_hardware(wildcards):
    return CONFIG["hardware"][wildcards.hardware]


def analysis_env():
    return f"{workflow.basedir}/envs/analysis.yaml"


def sweep_env(wildcards):
    """Each engine runs in its own pinned environment (with --sdm conda): the build the hardware
    names (`environment: volta`, for GPUs the standard builds have no kernels for), else the standard one."""
    return f"{workflow.basedir}/envs/{conda_env_name(sweep_hardware(wildcards), wildcards.engine)}.yaml"


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


def _cap(hardware, n_gpus, limit):
    """A limit (max_runtime, max_mem_mb) of the partition a job goes to; inf without a partitions file."""
    room = CLUSTER.room(CONFIG, hardware, n_gpus)
    return getattr(room, limit) if room is not None else float("inf")


def sweep_mem_mb(wildcards, attempt):
    """Host memory (infpop/sizing.py): the weights plus the engine's processes (vLLM: one per GPU
    and the engine core), times the attempt (a job killed for memory gets more on its retry), never
    above the partition's max_mem_mb."""
    estimate = sizing.host_memory_mb(CONFIG, wildcards.model, wildcards.engine, int(wildcards.n_gpus))
    return sizing.request(estimate, attempt, _cap(wildcards.hardware, int(wildcards.n_gpus), "max_mem_mb"))


def sweep_runtime(wildcards, attempt):
    """Minutes: the config's runtime_estimate for the job's trials and load, times the attempt,
    never above the partition's max_runtime (infpop/sizing.py)."""
    estimate = sizing.sweep_minutes(CONFIG, sweep_job(wildcards))
    return sizing.request(estimate, attempt, _cap(wildcards.hardware, int(wildcards.n_gpus), "max_runtime"))


# -- analysis ------------------------------------------------------------------------------------


def dataset_trials(wildcards):
    """The tidy trials table a dataset's analyses read."""
    return PAPER_TRIALS if wildcards.dataset == "paper" else MEASURED_TRIALS


def analysis_settings(wildcards):
    """The analysis choices of a dataset. Our repetitions are replicates (by default); the paper's
    published duplicates are re-runs of a sweep, not repetitions: its replay keeps the last, as
    the paper did."""
    if wildcards.dataset == "paper":
        return {**CONFIG["analysis"], "duplicates": "last"}
    return CONFIG["analysis"]


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
    targets += [PROVENANCE, PROVENANCE_SWEEPS, *REPETITION_TABLES, AGREEMENT_TABLE]
    if "paper" in DATASETS:
        targets.append(f"{RESULTS}/paper/comparison.csv")
    return targets + tune_targets() + crosscheck_targets()


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
    """Live tuning runs both engines and the optimisers in one job: an environment of its own, in
    the build the tuned hardware names (as a sweep's)."""
    return f"{workflow.basedir}/envs/{conda_env_name(_tune_hardware(), 'tune')}.yaml"


def tune_model_input(wildcards):
    return model_input(CONFIG["optimisation"]["tune"]["model"])


def tune_sweeps(wildcards):
    """Live tuning runs after the sweeps of its hardware and model: it reuses their trials, and
    two processes measuring on the same devices would disturb each other."""
    tune = CONFIG["optimisation"]["tune"]
    return sweep_manifests(tune["hardware"], tune["model"])


def _tune_hardware():
    return CONFIG["hardware"][CONFIG["optimisation"]["tune"]["hardware"]]


def tune_gpus(wildcards):
    """The most GPUs a tuning trial may use (a resource, like a sweep's)."""
    if _tune_hardware()["kind"] != "gpu":
        return 0
    return max(g for counts in _tune_gpu_counts().values() for g in counts)


def tune_gpu_model(wildcards):
    """As a sweep's: unset on the CPU, so SLURM is asked for no GPU."""
    return _tune_hardware().get("gpu_model")


def tune_mem_mb(wildcards, attempt):
    """As a sweep's, for the engine and GPU count that need the most."""
    estimate = sizing.tune_memory_mb(CONFIG, _tune_gpu_counts())
    hardware = CONFIG["optimisation"]["tune"]["hardware"]
    return sizing.request(estimate, attempt, _cap(hardware, tune_gpus(wildcards), "max_mem_mb"))


def tune_runtime(wildcards, attempt):
    """Minutes: a model load per engine and GPU count, and `budget` trials per engine (the config's
    runtime_estimate), times the attempt, never above the partition's max_runtime."""
    estimate = sizing.tune_minutes(CONFIG, _tune_gpu_counts())
    hardware = CONFIG["optimisation"]["tune"]["hardware"]
    return sizing.request(estimate, attempt, _cap(hardware, tune_gpus(wildcards), "max_runtime"))


# -- cross-checks ----------------------------------------------------------------------------------

CROSSCHECK = CONFIG["crosscheck"]
CROSSCHECK_CONFIG = {**MEASUREMENT_CONFIG, "crosscheck": CROSSCHECK}
CROSSCHECK_TABLE = f"{RESULTS}/measured/crosscheck.csv"
AGREEMENT_TABLE = f"{RESULTS}/measured/agreement.csv"


def crosscheck_targets():
    return [CROSSCHECK_TABLE] if CROSSCHECK["enabled"] else []


def crosscheck_model_input(wildcards):
    return model_input(CROSSCHECK["model"])


def crosscheck_sweeps(wildcards):
    """After the sweeps of its hardware and model, for the same reason as live tuning."""
    return sweep_manifests(CROSSCHECK["hardware"], CROSSCHECK["model"])


def _crosscheck_hardware():
    return CONFIG["hardware"][CROSSCHECK["hardware"]]


def crosscheck_gpus(wildcards):
    return CROSSCHECK["n_gpus"] if _crosscheck_hardware()["kind"] == "gpu" else 0


def crosscheck_gpu_model(wildcards):
    return _crosscheck_hardware().get("gpu_model")


def crosscheck_mem_mb(wildcards, attempt):
    """As a sweep's, for the engine that needs the most."""
    estimate = max(sizing.host_memory_mb(CONFIG, CROSSCHECK["model"], engine, CROSSCHECK["n_gpus"])
                   for engine in CROSSCHECK["engines"])
    return sizing.request(estimate, attempt, _cap(CROSSCHECK["hardware"], CROSSCHECK["n_gpus"], "max_mem_mb"))


def crosscheck_runtime(wildcards, attempt):
    estimate = sizing.crosscheck_minutes(CONFIG)
    return sizing.request(estimate, attempt, _cap(CROSSCHECK["hardware"], CROSSCHECK["n_gpus"], "max_runtime"))


def crosscheck_env():
    """Both engines in one job, as live tuning."""
    return f"{workflow.basedir}/envs/{conda_env_name(_crosscheck_hardware(), 'tune')}.yaml"
