# The Snakemake HTML report of every figure and table, built as part of the default target.


rule resolved_config:
    output:
        f"{RESULTS}/config.resolved.yaml",
    log:
        f"{RESULTS}/logs/resolved_config.log",
    params:
        config=CONFIG,
    conda:
        analysis_env()
    script:
        "../workflow/scripts/resolved_config.py"


rule provenance:
    input:
        sweep_manifests(),
    output:
        json=report(PROVENANCE, caption="../workflow/report/provenance.rst", category="Provenance"),
        sweeps=report(PROVENANCE_SWEEPS, caption="../workflow/report/provenance_sweeps.rst", category="Provenance"),
    log:
        f"{RESULTS}/logs/provenance.log",
    params:
        config=CONFIG,
    conda:
        analysis_env()
    script:
        "../workflow/scripts/provenance.py"


rule report:
    input:
        config=f"{RESULTS}/config.resolved.yaml",
        outputs=analysis_targets(),
    output:
        REPORT,
    log:
        f"{RESULTS}/logs/report.log",
    params:
        python=sys.executable,
        snakefile=workflow.main_snakefile,
    conda:
        analysis_env()
    shell:
        # The report of the analysis outputs, made by Snakemake itself from this run's records
        # (--nolock: the outer run holds the lock and writes nothing the report reads).
        "{params.python} -m snakemake --snakefile {params.snakefile} --configfile {input.config} --nolock "
        "--report {output} analysis > {log} 2>&1"
