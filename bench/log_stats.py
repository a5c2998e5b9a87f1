"""vLLM's statistics logger on and off, and our trial beside both, side by side in one run.

Each round runs three sides, each in a fresh engine (a load, the config's warm-up, then one timed
`generate` of all the benchmark's prompts), in an order rotated from round to round:
- `bare, logger off`: a bare `LLM(...).generate` with the library's defaults (the logger is off);
- `bare, logger on`: the same with `disable_log_stats=False`, what our trials ran before 2026-12
  and what `vllm bench throughput` runs unless given `--disable-log-stats`;
- `our trial`: the sweep machinery's all-prompts trial (the logger off).
Prints every run, then per side the median and per round the ratios logger on / off and ours /
bare (off), with their medians.

    python bench/log_stats.py [--rounds 5] [--n-gpus 1] [--config config.yaml] [--out DIR]
                              [--directory RUN]

Needs the config's model and benchmark built in RUN (default: the repository), as `make run` or
`snakemake --directory RUN` leaves them (the rules build_model and benchmark_data).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from infpop.config import load_config  # noqa: E402
from infpop.data.benchmark import load_prompts  # noqa: E402
from infpop.data.models import model_files  # noqa: E402
from infpop.measure.crosscheck import bare_arguments, run_reference  # noqa: E402
from infpop.measure.grid import Sweep, TrialKey  # noqa: E402
from infpop.measure.sweep import Supervisor  # noqa: E402

SIDES = ("bare, logger off", "bare, logger on", "our trial")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "config.yaml"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--n-gpus", type=int, default=1, help="tensor-parallel ranks")
    parser.add_argument("--out", default=None, help="folder for the runs' records and logs (default: a temporary one)")
    parser.add_argument("--directory", default=str(REPO), help="the run folder that holds resources/")
    args = parser.parse_args()
    config_file = Path(args.config).resolve()
    os.chdir(args.directory)  # the config's model path is relative to the run folder

    config = load_config(config_file)
    hardware, model = next(iter(config["hardware"])), next(iter(config["models"]))
    tokens = config["analysis"]["max_new_tokens"]
    sweep = Sweep(hardware, "vllm", model, args.n_gpus)
    benchmark = Path("resources", "data", f"{config['benchmark']['name']}.jsonl.gz").resolve()
    bench = config["benchmark"]
    prompts = load_prompts(benchmark, bench["order"], bench["seed"], bench["limit"])
    n = len(prompts)
    out = Path(args.out or tempfile.mkdtemp(prefix="log_stats_"))
    out.mkdir(parents=True, exist_ok=True)
    prompts_file = out / "prompts.json"
    prompts_file.write_text(json.dumps(prompts))
    model_path, _ = model_files(config, model)
    measuring = copy.deepcopy(config)
    measuring.update(max_new_tokens=[tokens], batch_sizes=[n], repetitions=args.rounds)
    log = open(out / "workers.log", "w")  # what our trial's engine prints
    timeout_s = config["load_timeout_s"] + config["trial_timeout_s"]
    rates: dict[str, list[float]] = {side: [] for side in SIDES}
    for r in range(args.rounds):
        for side in SIDES[r % 3 :] + SIDES[: r % 3]:
            if side == "our trial":
                supervisor = Supervisor(measuring, sweep, out / "ours", benchmark, worker_stderr=log)
                try:
                    record, _ = supervisor.measure(TrialKey(tokens, n, r))
                finally:
                    supervisor.close()
                if record["status"] != "ok":
                    sys.exit(f"r{r} our trial: {record['status']}: {record['error']}")
                rate, log_stats = record["throughput_tokens_per_s"], record["engine_settings"]["log_stats"]
            else:
                variant = copy.deepcopy(measuring)
                if side == "bare, logger on":
                    variant["engine_args"]["vllm"]["disable_log_stats"] = False
                name = f"bare_{'on' if 'on' in side else 'off'}_r{r}"
                arguments = bare_arguments(variant, model_path, prompts_file, tokens, args.n_gpus, out / f"{name}.json")
                result = run_reference("bare", variant, sweep, arguments, out / name, timeout_s)
                rate, log_stats = result["output_tokens_per_s"], result["log_stats"]
            rates[side].append(rate)
            print(f"r{r} {side:17}: {rate:9.1f} tok/s (statistics logger {'on' if log_stats else 'off'})", flush=True)

    print(f"\nvLLM, {model}, {n} prompts in one generate call, {tokens} new tokens, {args.n_gpus} rank(s):")
    for side in SIDES:
        values = rates[side]
        low, high = min(values), max(values)
        print(f"  {side:17}: median {statistics.median(values):9.1f} tok/s (min {low:.1f}, max {high:.1f})")
    for label, (a, b) in {
        "logger on / off": ("bare, logger on", "bare, logger off"),
        "ours / bare (off)": ("our trial", "bare, logger off"),
    }.items():
        ratios = [x / y for x, y in zip(rates[a], rates[b], strict=True)]
        per_round = ", ".join(f"{x:.3f}" for x in ratios)
        print(f"  {label}, per round: {per_round}; median {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
