"""vLLM with its prefix cache on and off, side by side in one run.

Two supervised vLLM workers hold the same model, one with `enable_prefix_caching` on, one with
it off (our default). Each measures the same trial (all the benchmark's prompts at one batch
size, the default config's settings), alternating on / off / on / off, so background load falls
on both alike. Prints every trial with the hit rate vLLM's own counters report, then the medians
and their ratio.

    python bench/prefix_cache.py [--batch-size 64] [--repeats 5] [--config config.yaml] [--out DIR]
                                 [--directory RUN]

Needs the config's model and benchmark built in RUN (default: the repository), as `make run` or
`snakemake --directory RUN` leaves them (the rules build_model and benchmark_data).
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from infpop.config import load_config  # noqa: E402
from infpop.measure.grid import Sweep, TrialKey  # noqa: E402
from infpop.measure.sweep import Supervisor  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "config.yaml"))
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=None, help="folder for the trial records (default: a temporary one)")
    parser.add_argument("--directory", default=str(REPO), help="the run folder that holds resources/")
    args = parser.parse_args()
    config_file = Path(args.config).resolve()
    os.chdir(args.directory)  # the config's model path is relative to the run folder

    config = load_config(config_file)
    hardware, model = next(iter(config["hardware"])), next(iter(config["models"]))
    tokens = config["analysis"]["max_new_tokens"]
    benchmark = Path("resources", "data", f"{config['benchmark']['name']}.jsonl.gz").resolve()
    out = Path(args.out or tempfile.mkdtemp(prefix="prefix_cache_"))
    out.mkdir(parents=True, exist_ok=True)
    log = open(out / "workers.log", "w")  # what the engines print
    supervisors = {}
    for cache in (True, False):
        variant = copy.deepcopy(config)
        variant.update(max_new_tokens=[tokens], batch_sizes=[args.batch_size])
        variant["engine_args"]["vllm"]["enable_prefix_caching"] = cache
        supervisors[cache] = Supervisor(
            variant,
            Sweep(hardware, "vllm", model, 1),
            out / f"cache_{'on' if cache else 'off'}",
            benchmark,
            worker_stderr=log,
        )
    throughput = {True: [], False: []}
    try:
        for rep in range(args.repeats):
            for cache in (True, False):
                record, _ = supervisors[cache].measure(TrialKey(tokens, args.batch_size, rep))
                rate = record["throughput_tokens_per_s"]
                if record["status"] != "ok":
                    sys.exit(f"r{rep} prefix cache {'on' if cache else 'off'}: {record['status']}: {record['error']}")
                hit = (record["engine_metrics"] or {}).get("prefix_cache_hit_rate")
                throughput[cache].append(rate)
                print(
                    f"r{rep} prefix cache {'on ' if cache else 'off'}: {record['status']} {rate:8.1f} tok/s, "
                    f"prefix-cache hit rate {hit:.3f}",
                    flush=True,
                )
    finally:
        for supervisor in supervisors.values():
            supervisor.close()
    on, off = statistics.median(throughput[True]), statistics.median(throughput[False])
    print(
        f"\nvLLM b{args.batch_size}, {tokens} new tokens, {config['benchmark']['limit'] or 'all'} prompts, "
        f"{args.repeats} trials each, alternating:"
    )
    print(f"  cache on : median {on:8.1f} tok/s (min {min(throughput[True]):.1f}, max {max(throughput[True]):.1f})")
    print(f"  cache off: median {off:8.1f} tok/s (min {min(throughput[False]):.1f}, max {max(throughput[False]):.1f})")
    print(f"  on / off = {on / off:.2f}")


if __name__ == "__main__":
    main()
