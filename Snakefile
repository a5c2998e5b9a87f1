# InfPop: measure, explain and optimise LLM inference throughput.
# The default config runs anywhere (a tiny local model on the CPU); configs/paper.yaml is the
# paper's 20-model GPU grid. See README.md.
from snakemake.utils import min_version

min_version("9.0")


# --configfile replaces the default experiment instead of merging into it (a merge would add the
# tiny CPU model to the paper's grid); --config key=value still overrides either.
if not workflow.overwrite_configfiles:

    configfile: f"{workflow.basedir}/config.yaml"



include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/trials.smk"
include: "rules/aggregate.smk"
include: "rules/analysis.smk"
include: "rules/hpo.smk"
include: "rules/crosscheck.smk"
include: "rules/report.smk"


# Every rule but the sweeps runs on the machine that runs Snakemake, also on a cluster: they are
# light (data, plan, tables, statistics, the report), or need the internet (model downloads). A
# new rule that runs trials is left out.
localrules:
    benchmark_data,
    build_model,
    download_model,
    plan,
    aggregate,
    import_paper,
    rq1_landscapes,
    rq2_table2,
    rq2_anova,
    rq3_batch,
    rq4_hardware,
    discussion,
    repetitions,
    agreement,
    comparison,
    hpo,
    optimiser_study,
    resolved_config,
    provenance,
    report,
    all,
    rq1,
    rq2,
    rq3,
    rq4,
    rq5,
    paper,
    analysis,


rule all:
    input:
        PLAN_FILE,
        MEASURED_TRIALS,
        analysis_targets(),
        REPORT,
    default_target: True


# Named targets: re-run one research question, the replay, or the report alone.
rule rq1:
    input:
        rq_targets("rq1"),


rule rq2:
    input:
        rq_targets("rq2"),


rule rq3:
    input:
        rq_targets("rq3"),


rule rq4:
    input:
        rq_targets("rq4"),


rule rq5:
    input:
        rq_targets("rq5"),


rule paper:
    input:
        [t for rq in ("rq1", "rq2", "rq3", "rq4", "discussion", "rq5") for t in rq_targets(rq, ["paper"])],
        f"{RESULTS}/paper/comparison.csv",


rule analysis:
    input:
        analysis_targets(),
