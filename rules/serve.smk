# Serving mode (config key `serve`, package infpop.serve, docs/serving.md): each engine's
# OpenAI-compatible server measured under load. The plan (servers, load points, what is left out),
# one job per server (hardware, engine, model, n_gpus, server settings; one JSON per load point),
# and the tables of every load point.


rule serve_plan:
    output:
        SERVE_PLAN_FILE,
    log:
        f"{RESULTS}/logs/serve/plan.log",
    conda:
        analysis_env()
    params:
        serve=SERVE_PLAN_SETTINGS,
    script:
        "../workflow/scripts/serve_plan.py"


# A server runs on a compute node (it declares its GPUs), as a sweep does.
rule serve:
    input:
        benchmark=BENCHMARK_FILE,
        model=serve_model_input,
    output:
        manifest=SERVE_MANIFEST,
    log:
        f"{RESULTS}/logs/serve/{{hardware}}/{{engine}}/{{model}}/g{{n_gpus}}/{{settings}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/serve/{{hardware}}/{{engine}}/{{model}}/g{{n_gpus}}/{{settings}}.tsv"
    conda:
        serve_env
    threads: sweep_threads  # as a sweep's: the server and its load generator share the node
    resources:
        gpu=sweep_gpus,
        gpu_model=sweep_gpu_model,
        mem_mb=serve_mem_mb,
        runtime=serve_runtime,
    params:
        settings=serve_settings,
    script:
        "../workflow/scripts/serve.py"


rule serve_tables:
    input:
        serve_manifests(),
    output:
        loadpoints=report(
            f"{RESULTS}/serve/loadpoints.csv",
            caption="../workflow/report/serve_loadpoints.rst",
            category="Serving",
        ),
        summary=report(
            f"{RESULTS}/serve/summary.csv",
            caption="../workflow/report/serve_summary.rst",
            category="Serving",
        ),
        crosscheck=report(
            f"{RESULTS}/serve/harness_crosscheck.csv",
            caption="../workflow/report/serve_crosscheck.rst",
            category="Serving",
        ),
        png=report(
            f"{RESULTS}/serve/latency_throughput.png",
            caption="../workflow/report/serve_latency_throughput.rst",
            category="Serving",
        ),
    log:
        f"{RESULTS}/logs/serve/tables.log",
    conda:
        analysis_env()
    params:
        # the measures are derived from the records' requests under these: a change re-runs only this
        measures=SERVE_MEASURE_SETTINGS,
    script:
        "../workflow/scripts/serve_tables.py"


# Item 5 of issue 17: knees of the latency-throughput curves, the Pareto front of tokens/s per user
# against tokens/s per device, goodput over the server's knobs and each knob's effect.
rule serve_analysis:
    input:
        serve_manifests(),
    output:
        knees=report(
            f"{RESULTS}/serve/knees.csv",
            caption="../workflow/report/serve_knees.rst",
            category="Serving",
        ),
        pareto=report(
            f"{RESULTS}/serve/pareto.csv",
            caption="../workflow/report/serve_pareto.rst",
            category="Serving",
        ),
        knobs=report(
            f"{RESULTS}/serve/knob_effects.csv",
            caption="../workflow/report/serve_knob_effects.rst",
            category="Serving",
        ),
        landscape=report(
            f"{RESULTS}/serve/goodput_landscape.png",
            caption="../workflow/report/serve_goodput_landscape.rst",
            category="Serving",
        ),
    log:
        f"{RESULTS}/logs/serve/analysis.log",
    conda:
        analysis_env()
    params:
        measures=SERVE_MEASURE_SETTINGS,
    script:
        "../workflow/scripts/serve_analysis.py"


# Item 6: vLLM's auto_tune against InfPop's tuning (serve.tuning), on the serving jobs' records
# (replay) or on live servers (live: a measuring job).
rule serve_autotune:
    input:
        unpack(serve_tuning_input),
    output:
        comparison=report(
            f"{RESULTS}/serve/autotune_comparison.csv",
            caption="../workflow/report/serve_autotune.rst",
            category="Serving",
        ),
        probes=report(
            f"{RESULTS}/serve/autotune_probes.csv",
            caption="../workflow/report/serve_autotune_probes.rst",
            category="Serving",
        ),
        png=report(
            f"{RESULTS}/serve/autotune_probes.png",
            caption="../workflow/report/serve_autotune_png.rst",
            category="Serving",
        ),
        capacity=report(
            f"{RESULTS}/serve/capacity.csv",
            caption="../workflow/report/serve_capacity.rst",
            category="Serving",
        ),
    log:
        f"{RESULTS}/logs/serve/autotune.log",
    conda:
        serve_tuning_env
    threads: all_cores if LIVE_TUNING else 1  # live, it runs servers and their load, as serve does
    resources:
        **SERVE_TUNING_RESOURCES,  # live: a compute node's (it runs servers); replayed: none, a local rule
    params:
        settings=SERVE_TUNING_SETTINGS,
    script:
        "../workflow/scripts/serve_autotune.py"
