# The validated config, the plan against the cluster, the paths several stages name, and the
# wildcards. (The functions the rules call are in helpers.smk, inputs.smk and targets.smk beside
# this file; rules/*.smk hold the rules alone.)
import os
import sys

# The infpop package lives beside the Snakefile: importable here, in every job's scripts (also in
# conda envs and on cluster nodes, which re-read this file). (The sweep's workers are given it
# by infpop.measure.sweep.worker_environment.)
sys.path.insert(0, workflow.basedir)
os.environ.update(PYTHONPATH=os.pathsep.join(filter(None, [workflow.basedir, os.environ.get("PYTHONPATH")])))

from snakemake.exceptions import WorkflowError

from infpop.cluster import sizing
from infpop.cluster.partitions import plan_cluster, run_settings
from infpop.config import BUILT_MODELS_DIR, ConfigError, conda_env_name, load_config
from infpop.data.hub import manifest_path
from infpop.data.paper import HARDWARE as PAPER_HARDWARE
from infpop.measure.grid import plan
from infpop.optimise.tune import tune_space

# The config file(s) of this run, for messages naming the key to fix.
CONFIG_FILES = ", ".join(map(str, workflow.configfiles)) or None
try:
    CONFIG = load_config(config, config_file=CONFIG_FILES)
except ConfigError as exc:
    sys.exit(f"InfPop: {exc}")

RESULTS = CONFIG["results_dir"]
SWEEPS, EXCLUDED = plan(CONFIG)
TUNE_GPU_COUNTS = {engine: list(tune_space(CONFIG, engine).n_gpus) for engine in CONFIG["optimise"]["tune"]["engines"]}

# The jobs of the plan against what the cluster offers, before anything is submitted: a sweep no
# partition can take stops the run here; one estimated to outlast its partition becomes one job
# per max_new_tokens. run_settings reads what this run was given (the partitions file of the
# profile or command line, resources set on the sweeps); the checks stop the main process only.
CLUSTER = plan_cluster(CONFIG, SWEEPS, TUNE_GPU_COUNTS, **run_settings(workflow, sys.argv))
if CLUSTER.problems and workflow.is_main_process:
    sys.exit("InfPop: the cluster cannot run this plan:\n" + "\n".join(f"  {p}" for p in CLUSTER.problems))

# Files more than one rule file names (each output is declared once, by the rule that writes it).
PLAN_FILE = f"{RESULTS}/plan.csv"
MEASURED_TRIALS = f"{RESULTS}/measured/trials.csv"
PAPER_TRIALS = f"{RESULTS}/paper/trials.csv"
REPORT = f"{RESULTS}/report.html"
BENCHMARK_FILE = f"resources/data/{CONFIG['benchmark']['name']}.jsonl.gz"
BUILT_MODEL_DIR = f"{BUILT_MODELS_DIR}/{{model}}"  # where models with `build` go (checked by load_config)
MODEL_MANIFEST = str(manifest_path(CONFIG["models_dir"], "{model}"))  # an hf_id model, downloaded once
# One folder per sweep; its manifest (the sweep rule's output) lists the trial JSONs beside it. A
# sweep split into jobs (`part` _t<max_new_tokens>, else empty) has a manifest per job.
SWEEP_MANIFEST = f"{RESULTS}/trials/{{hardware}}/{{engine}}/{{model}}/g{{n_gpus}}/sweep{{part}}.json"
# Datasets analysed: our measurements and, unless turned off, the paper's published trials.
DATASETS = ["measured"] + (["paper"] if CONFIG["paper_data"]["replay"] else [])
# What the measurements depend on (the params of the jobs that measure): changing the analysis,
# the replay, the optimisation or the jobs' runtime estimate must not re-run them.
MEASUREMENT_CONFIG = {
    k: v for k, v in CONFIG.items() if k not in ("analysis", "paper_data", "optimise", "runtime_estimate")
}


wildcard_constraints:
    dataset="measured|paper",
    hardware="|".join(CONFIG["hardware"]),
    engine="|".join(CONFIG["engines"]),
    model="|".join(CONFIG["models"]),
    n_gpus=r"\d+",
    part=sizing.PART_PATTERN,
