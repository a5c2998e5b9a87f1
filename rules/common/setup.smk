# The validated config, the plan against the cluster, the paths several stages name, and the
# wildcards. (The functions the rules call are in helpers.smk, inputs.smk and targets.smk beside
# this file; rules/*.smk hold the rules alone.)
import os
import re
import sys

# The infpop package lives beside the Snakefile: importable here, in every job's scripts (also in
# conda envs and on cluster nodes, which re-read this file). (The sweep's workers are given it
# by infpop.measure.sweep.worker_environment.)
sys.path.insert(0, workflow.basedir)
os.environ.update(PYTHONPATH=os.pathsep.join(filter(None, [workflow.basedir, os.environ.get("PYTHONPATH")])))

from snakemake.exceptions import WorkflowError

from infpop.cluster import sizing
from infpop.cluster.partitions import plan_cluster, read_partitions
from infpop.config import ConfigError, load_config
from infpop.data.hub import manifest_path
from infpop.data.models import BUILT_MODELS_DIR
from infpop.data.paper import APPENDIX_COMMIT, APPENDIX_REPO
from infpop.data.paper import HARDWARE as PAPER_HARDWARE
from infpop.measure.device_check import conda_env_name
from infpop.measure.engines import rehearsal as rehearsal_engine
from infpop.measure.grid import plan
from infpop.optimise.tune import tune_space
from infpop.serve.plan import plan as serve_plan

# The config, read by InfPop itself (the Snakefile has no configfile directive, so that the YAML is
# read with its lines): the --configfile files, else config.yaml, then the --config overrides.
# Every problem stops the run here, before any job, in one message.
CONFIG_FILES = [str(f) for f in workflow.config_settings.configfiles] or [f"{workflow.basedir}/config.yaml"]
try:
    CONFIG = load_config(*CONFIG_FILES, overrides=dict(workflow.config_settings.config))
except ConfigError as exc:
    sys.exit(f"InfPop: {exc}")
# The jobs' scripts read the validated config (snakemake.config): settings that cannot change
# their outputs (time limits, where the paper's files are copied from) are read there, not passed
# as params, so that changing them re-runs nothing.
config.clear()
config.update(CONFIG)
os.environ.update(INFPOP_CONFIG_FILES=", ".join(CONFIG_FILES))  # named in the jobs' messages

RESULTS = CONFIG["results_dir"]
SWEEPS, EXCLUDED = plan(CONFIG)
SERVE_JOBS, SERVE_EXCLUDED = serve_plan(CONFIG)  # none without a serve section
TUNE_GPU_COUNTS = {engine: list(tune_space(CONFIG, engine).n_gpus) for engine in CONFIG["optimise"]["tune"]["engines"]}


# The resources a profile or the command line set on the sweep rule (set-resources): the cluster
# plan checks them against the config's hardware. (A bare name or number is checked; an expression,
# evaluated per job, is not.)
SWEEP_RESOURCE_OVERRIDES = {}
for name, resource in dict(workflow.resource_settings.overwrite_resources.get("sweep", {})).items():
    try:
        SWEEP_RESOURCE_OVERRIDES[name] = getattr(resource, "value", resource)
    except ValueError:
        if re.fullmatch(r"[A-Za-z0-9_.]+", str(getattr(resource, "raw", ""))):
            SWEEP_RESOURCE_OVERRIDES[name] = str(resource.raw)

# The plan against the cluster the config names (cluster.partitions): before anything is
# submitted, a sweep no partition can take stops the run here, and one estimated to outlast its
# partition becomes one job per max_new_tokens. The workflow hands the same file to the SLURM
# plugin (its SNAKEMAKE_SLURM_PARTITIONS), so that both place jobs by one file. Without one, nothing
# is capped or split. The checks stop the main process only.
PARTITIONS = read_partitions(CONFIG["cluster"]["partitions"]) if CONFIG["cluster"]["partitions"] else None
if PARTITIONS is not None:
    os.environ.update(SNAKEMAKE_SLURM_PARTITIONS=PARTITIONS.source)
CLUSTER = plan_cluster(
    CONFIG, SWEEPS, TUNE_GPU_COUNTS, PARTITIONS, overrides=SWEEP_RESOURCE_OVERRIDES, serve_jobs=SERVE_JOBS
)
if CLUSTER.problems and workflow.is_main_process:
    sys.exit("InfPop: the cluster cannot run this plan:\n" + "\n".join(f"  {p}" for p in CLUSTER.problems))
# A rehearsal (config key `rehearsal`) runs the same plan with the rehearsal engine answering every
# trial from a trials table: its sweeps ask for no GPU and no model, and everything the run makes
# of its own is a dataset apart, results/rehearsal/ (trials, table, analyses, plan, report, logs).
REHEARSAL = CONFIG["rehearsal"]
# Within-trial sequential stopping (budget.sequential): the sweeps time a sample of each trial's
# batches (infpop/measure/sequential.py); None times every batch.
SEQUENTIAL = CONFIG["budget"]["sequential"]
# A budgeted run (budget.run): one job per (hardware, engine) spends its share of the budget as
# the budget study's run does (infpop/budget/spend.py), in place of the sweep jobs; it writes the
# same sweep manifests and trial records.
# (imported only then: the study's modules take most of a second to import)
if CONFIG["budget"]["run"]:
    from infpop.budget import spend as budget_spend

    BUDGET_SHARES = budget_spend.shares(CONFIG)
else:
    BUDGET_SHARES = []
# The run's own dataset (our measurements, or the rehearsal's simulated trials) and where the run's
# own files go: results_dir itself for measurements, the rehearsal's folder for a rehearsal.
OWN = "rehearsal" if REHEARSAL else "measured"
OWN_DIR = f"{RESULTS}/{OWN}"
RUN_DIR = OWN_DIR if REHEARSAL else RESULTS
PLAN_FILE = f"{RUN_DIR}/plan.csv"
if workflow.is_main_process:
    print(sizing.plan_summary(CONFIG, CLUSTER.jobs, len(EXCLUDED), PLAN_FILE), file=sys.stderr)
    if BUDGET_SHARES:
        print(budget_spend.describe(CONFIG, BUDGET_SHARES), file=sys.stderr)
    if SERVE_JOBS:
        print(sizing.serve_summary(CONFIG, SERVE_JOBS, len(SERVE_EXCLUDED)), file=sys.stderr)
    if REHEARSAL:
        print(
            f"InfPop rehearsal: every trial answered from {rehearsal_engine.table_path(CONFIG)} on a virtual "
            f"clock, on the CPU (no GPU asked for, no model downloaded or loaded); results in {OWN_DIR}/",
            file=sys.stderr,
        )

# Files more than one rule file names (each output is declared once, by the rule that writes it).
OWN_TRIALS = f"{OWN_DIR}/trials.csv"
PAPER_TRIALS = f"{RESULTS}/paper/trials.csv"
REPORT = f"{RUN_DIR}/report.html"
# the table a rehearsal answers from (an input of its sweeps: the paper's is imported first)
REHEARSAL_TABLE = str(rehearsal_engine.table_path(CONFIG)) if REHEARSAL else None
BENCHMARK_FILE = f"resources/data/{CONFIG['benchmark']['name']}.jsonl.gz"
BUILT_MODEL_DIR = f"{BUILT_MODELS_DIR}/{{model}}"  # where models with `build` go (checked by load_config)
MODEL_MANIFEST = str(manifest_path(CONFIG["models_dir"], "{model}"))  # an hf_id model, downloaded once
# One folder per sweep; its manifest (the sweep rule's output) lists the trial JSONs beside it. A
# sweep split into jobs (`part` _t<max_new_tokens>, else empty) has a manifest per job.
TRIALS_DIR = f"{RUN_DIR}/trials"
# A sweep of engine settings other than the default (engine_arg_axes) has a folder of its own
# beneath (`variant` /<settings>, else empty).
SWEEP_MANIFEST = f"{TRIALS_DIR}/{{hardware}}/{{engine}}/{{model}}/g{{n_gpus}}{{variant}}/sweep{{part}}.json"
# Serving mode: one folder per server, its manifest (the serve rule's output) beside its load-point
# records; the plan of the servers.
SERVE_MANIFEST = f"{RESULTS}/serve/{{hardware}}/{{engine}}/{{model}}/g{{n_gpus}}/{{settings}}/serve.json"
SERVE_PLAN_FILE = f"{RESULTS}/serve/plan.csv"
# Datasets analysed: the run's own (measured or rehearsal) and, unless turned off, the paper's
# published trials.
DATASETS = [OWN] + (["paper"] if CONFIG["paper_data"]["replay"] else [])


wildcard_constraints:
    dataset=f"{OWN}|paper",
    hardware="|".join(CONFIG["hardware"]),
    engine="|".join(CONFIG["engines"]),
    model="|".join(CONFIG["models"]),
    n_gpus=r"\d+",
    part=sizing.PART_PATTERN,
    variant="(" + "|".join(sorted({re.escape(sweep.variant) for sweep in SWEEPS} | {""})) + ")",
    settings="|".join(re.escape(label) for label in sorted({job.settings for job in SERVE_JOBS})) or "(?!)",
