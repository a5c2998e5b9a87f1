# InfPop: measure, explain and optimise LLM inference throughput.
# The default config runs anywhere (a tiny local model on the CPU); configs/paper.yaml is the
# paper's 20-model GPU grid. See README.md and docs/.
from snakemake.utils import min_version

min_version("9.0")


# The config is config.yaml, or the --configfile files instead of it (a merge would add the tiny
# CPU model to the paper's grid), with --config key=value overriding either: read and checked by
# InfPop (rules/common/setup.smk), not by a configfile directive, so that every problem is reported
# with its file and line.
report: "workflow/report/workflow.rst"


include: "rules/common/setup.smk"
include: "rules/common/helpers.smk"
include: "rules/common/inputs.smk"
include: "rules/common/targets.smk"
include: "rules/data.smk"
include: "rules/measure.smk"
include: "rules/analysis.smk"
include: "rules/optimise.smk"
include: "rules/crosscheck.smk"
include: "rules/serve.smk"
include: "rules/budget.smk"
include: "rules/targets.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        reported_outputs(),
        REPORT,


# The rules that run trials declare the GPUs they need (the `gpu` resource, 0 on the CPU) and go
# to compute nodes on a cluster; every other rule runs where Snakemake runs.
node_rules = sorted(rule.name for rule in workflow.rules if "gpu" in rule.resources)
workflow.localrules(*(rule.name for rule in workflow.rules if rule.name not in node_rules))

# Cores are set (set-threads) for the rules that run on compute nodes; one set for any other rule (a
# rule renamed since the profile was written) would leave a compute job with 1 core: an error.
unknown = sorted(set(workflow.resource_settings.overwrite_threads) - set(node_rules))
if unknown and workflow.is_main_process:
    sys.exit(
        f"InfPop: set-threads names {', '.join(unknown)}: cores are set for the rules that run on "
        f"compute nodes, {', '.join(node_rules)}"
    )
