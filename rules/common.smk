# Config validation, the trial plan, and the input functions of every rule.
import os
import sys

# The infpop package lives beside the Snakefile: importable here, in every job's scripts (also in
# conda envs and on cluster nodes, which re-read this file) and in the sweep's worker processes.
sys.path.insert(0, workflow.basedir)
os.environ.update(PYTHONPATH=os.pathsep.join(filter(None, [workflow.basedir, os.environ.get("PYTHONPATH")])))

from infpop.config import BUILT_MODELS_DIR, ConfigError, load_config
from infpop.grid import plan, trial_keys
from infpop.paper import HARDWARE as PAPER_HARDWARE


try:
    CONFIG = load_config(config, config_file=", ".join(map(str, workflow.configfiles)) or None)
except ConfigError as exc:
    sys.exit(f"InfPop: {exc}")

RESULTS = CONFIG["results_dir"]
SWEEPS, EXCLUDED = plan(CONFIG)
PLAN_FILE = f"{RESULTS}/plan.csv"
MEASURED_TRIALS = f"{RESULTS}/measured/trials.csv"
PAPER_TRIALS = f"{RESULTS}/paper/trials.csv"
PAPER_REFERENCE = f"{workflow.basedir}/configs/paper_reference.csv"
REPORT = f"{RESULTS}/report.html"
# Datasets analysed: our measurements and, unless turned off, the paper's published trials.
DATASETS = ["measured"] + (["paper"] if CONFIG["paper_data"]["replay"] else [])
BENCHMARK_FILE = f"resources/data/{CONFIG['benchmark']['name']}.jsonl.gz"
BUILT_MODEL_DIR = f"{BUILT_MODELS_DIR}/{{model}}"  # where models with `build` go (checked by load_config)
# What the measurements depend on (the sweeps' and the plan's params): changing the analysis or
# the replay settings must not make Snakemake re-run the measurement jobs.
MEASUREMENT_CONFIG = {k: v for k, v in CONFIG.items() if k not in ("analysis", "paper_data")}
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
    """A sweep takes every core of a local run: two CPU measurements sharing cores would distort
    both, and GPU sweeps are not yet given distinct devices on one box (each would pin devices
    0..n-1), so they run one at a time too."""
    return workflow.cores


def sweep_gpus(wildcards):
    """GPUs this sweep needs (a resource, so schedulers and clusters hand them out)."""
    return int(wildcards.n_gpus) if sweep_hardware(wildcards)["kind"] == "gpu" else 0


def sweep_gpu_model(wildcards):
    return sweep_hardware(wildcards).get("gpu_model", "none")


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
    return targets


def analysis_targets():
    """Every analysis output: RQ1-RQ4, the discussion, and the paper comparison."""
    targets = [t for rq in ("rq1", "rq2", "rq3", "rq4", "discussion") for t in rq_targets(rq)]
    if "paper" in DATASETS:
        targets.append(f"{RESULTS}/paper/comparison.csv")
    return targets
