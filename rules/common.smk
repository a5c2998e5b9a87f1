# Config validation, the trial plan, and the input functions of every rule.
import os
import sys

# The infpop package lives beside the Snakefile: importable here, in every job's scripts (also in
# conda envs and on cluster nodes, which re-read this file) and in the sweep's worker processes.
sys.path.insert(0, workflow.basedir)
os.environ.update(PYTHONPATH=os.pathsep.join(filter(None, [workflow.basedir, os.environ.get("PYTHONPATH")])))

from infpop.config import ConfigError, load_config, model_dir
from infpop.grid import plan


try:
    CONFIG = load_config(config, config_file=", ".join(map(str, workflow.configfiles)) or None)
except ConfigError as exc:
    sys.exit(f"InfPop: {exc}")

RESULTS = CONFIG["results_dir"]
SWEEPS, EXCLUDED = plan(CONFIG)
PLAN_FILE = f"{RESULTS}/plan.csv"
MEASURED_TRIALS = f"{RESULTS}/measured/trials.csv"
BENCHMARK_FILE = f"resources/data/{CONFIG['benchmark']['name']}.jsonl.gz"
BUILT_MODEL_DIR = "resources/models/{model}"  # where models with `build` go (checked by load_config)
# One folder per sweep; its manifest (the sweep rule's output) lists the trial JSONs beside it.
SWEEP_MANIFEST = f"{RESULTS}/trials/{{hardware}}/{{engine}}/{{model}}/g{{n_gpus}}/sweep.json"


wildcard_constraints:
    hardware="|".join(CONFIG["hardware"]),
    engine="|".join(CONFIG["engines"]),
    model="|".join(CONFIG["models"]),
    n_gpus=r"\d+",


def sweep_manifests():
    """The manifest of every sweep in the plan (the sweep rule's outputs)."""
    return [SWEEP_MANIFEST.format(**vars(sweep)) for sweep in SWEEPS]


def built_model_seed(wildcards):
    return CONFIG["models"][wildcards.model]["seed"]


def sweep_model_input(wildcards):
    """A local model directory is an input of its sweeps (built first when it has `build`)."""
    spec = CONFIG["models"][wildcards.model]
    return [spec["path"]] if "path" in spec else []


def sweep_hardware(wildcards):
    return CONFIG["hardware"][wildcards.hardware]


def analysis_env():
    return f"{workflow.basedir}/envs/analysis.yaml"


def sweep_env(wildcards):
    """Each engine runs in its own pinned environment (with --sdm conda)."""
    return f"{workflow.basedir}/envs/{wildcards.engine}.yaml"


def sweep_threads(wildcards):
    """CPU sweeps take every core: two measurements sharing cores would distort both."""
    return workflow.cores if sweep_hardware(wildcards)["kind"] == "cpu" else 2


def sweep_gpus(wildcards):
    """GPUs this sweep needs (a resource, so schedulers and clusters hand them out)."""
    return int(wildcards.n_gpus) if sweep_hardware(wildcards)["kind"] == "gpu" else 0


def sweep_gpu_model(wildcards):
    return sweep_hardware(wildcards).get("gpu_model", "none")


def sweep_runtime(wildcards, attempt):
    """Minutes: every trial at its time limit plus the loads, doubled on each retry."""
    trials = len(CONFIG["batch_sizes"]) * len(CONFIG["max_new_tokens"]) * CONFIG["repetitions"]
    seconds = CONFIG["load_timeout_s"] + trials * CONFIG["trial_timeout_s"]
    return int(seconds / 60 * attempt) + 1
