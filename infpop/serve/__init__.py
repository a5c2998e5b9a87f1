"""Serving mode: each engine's OpenAI-compatible server measured under load (docs/serving.md).

- plan.py: what runs - one job per (hardware, engine, model, n_gpus, server settings), its load
  points (request rate x max concurrency), and what is left out of the plan and why;
- server.py: each engine's server as a context manager (its own process group, a free port,
  /health with a deadline while the process is watched, stopped by its process group);
- requests.py: the request stream of a load point (prompts, output lengths, arrival times from
  the seed, the rate and the burstiness), the same for both engines and both load generators;
- harness.py: the two load generators behind one interface - vLLM's serving benchmark, through
  its own add_cli_args/main, and InfPop's, an asyncio client sending only standard OpenAI fields;
- metrics.py: per-request results -> TTFT, TPOT, ITL, E2EL, throughput, goodput under the SLO,
  achieved against offered rate (vLLM's definitions);
- records.py: one JSON record per (server settings, load point, harness, repetition), validated
  against workflow/schemas/serve.schema.yaml, with the trial record's provenance, and its reuse;
- session.py: a server with its load points - `ServeSession.measure(load_point, rep)` is what a
  capacity search or an optimiser calls; `run_serve_job` is one Snakemake job;
- tables.py: the records of a run as tables (every load point, the repetitions' CIs, the
  harness cross-check) and the latency-throughput figure.
- analysis.py: the load points analysed - the knees of the latency-throughput curves (Kneedle),
  the Pareto front of tokens/s per user against per device, goodput over the knobs and each knob's
  effect, capacity under the SLO by bisection with per-probe CIs (through a ServeSession);
- autotune.py: vLLM's benchmarks/auto_tune reimplemented, against InfPop's tuning of the same
  knobs, on live servers or replayed load points, each side's invocations and device-minutes.
"""
