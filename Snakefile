# InfPop: measure, explain and optimise LLM inference throughput.
# The default config runs anywhere (a tiny local model on the CPU); configs/paper.yaml is the
# paper's 20-model GPU grid. See README.md.
from snakemake.utils import min_version

min_version("9.0")


# --configfile replaces the default experiment instead of merging into it (a merge would add the
# tiny CPU model to the paper's grid); --config key=value still overrides either.
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"



include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/trials.smk"
include: "rules/aggregate.smk"


rule all:
    input:
        PLAN_FILE,
        MEASURED_TRIALS,
    default_target: True
