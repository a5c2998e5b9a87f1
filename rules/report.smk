# The Snakemake HTML report of every figure and table, built as part of the default target.


rule resolved_config:
    output:
        f"{RUN_DIR}/config.resolved.yaml",
    log:
        f"{RUN_DIR}/logs/resolved_config.log",
    conda:
        analysis_env()
    params:
        config=CONFIG,
    script:
        "../workflow/scripts/resolved_config.py"


rule report:
    input:
        config=f"{RUN_DIR}/config.resolved.yaml",
        outputs=reported_outputs(),
    output:
        REPORT,
    log:
        f"{RUN_DIR}/logs/report.log",
    conda:
        analysis_env()
    params:
        python=sys.executable,
        snakefile=workflow.main_snakefile,
    shell:
        # The report of the analysis outputs, made by Snakemake itself from this run's records
        # (--nolock: the outer run holds the lock and writes nothing the report reads).
        "{params.python} -m snakemake --snakefile {params.snakefile} --configfile {input.config} --nolock "
        "--report {output} reported > {log} 2>&1"
