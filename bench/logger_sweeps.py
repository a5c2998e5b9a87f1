"""The default run's vLLM sweep before and after the statistics logger was turned off (issue 14):
the sweep job of config.yaml (cpu/vllm/tiny-llama/g1 by default) run by the tree before the change
(a git worktree of --before, whose trials load vLLM with disable_log_stats=False) and by this tree
(the logger off), alternating, each in a fresh folder, `--cores 2`. Both trees use this
repository's .venv, so only the code differs. Prints each run's throughput per batch size (median
of its repetitions), the ratio after / before per round and its median per batch size, and each
record's `engine_settings.log_stats` (absent before the change).

    python bench/logger_sweeps.py [--before 904f11b] [--rounds 2] [--sweep cpu/vllm/tiny-llama/g1]
                                  [--config config.yaml] [--directory FOLDER]

The work folder (default: a new one beside this repository) links ../shared. The model folder
and benchmark file are built once (rules build_model, benchmark_data, by this
tree) and linked into every folder.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from infpop.config import load_config  # noqa: E402


def snakemake(tree: Path, folder: Path, config: str, *targets: str) -> float:
    """One Snakemake run of `tree`'s workflow in `folder`; its wall seconds."""
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(tree / "Snakefile"), "--directory", str(folder)]
    command += ["--cores", "2", "--configfile", str(tree / config), "--", *targets]
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{tree} in {folder} failed:\n{(done.stdout + done.stderr)[-3000:]}")
    return time.monotonic() - started


def throughputs(folder: Path, sweep: str) -> tuple[dict[int, float], set]:
    """Median throughput over the repetitions per batch size, and the records' log_stats values."""
    rates, logger_states = defaultdict(list), set()
    for path in (folder / "results" / "trials" / sweep).rglob("b*_r*.json"):
        record = json.loads(path.read_text())
        if record["status"] == "ok":
            rates[record["batch_size"]].append(record["throughput_tokens_per_s"])
            logger_states.add(record["engine_settings"].get("log_stats", "absent"))
    return {b: statistics.median(v) for b, v in sorted(rates.items())}, logger_states


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="904f11b", help="the commit before the change")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--sweep", default="cpu/vllm/tiny-llama/g1")
    parser.add_argument("--config", default="config.yaml")
    parser.add_argument("--directory", default=None)
    args = parser.parse_args()
    work = Path(args.directory or tempfile.mkdtemp(prefix="logger-sweeps-", dir=REPO.parent))
    work.mkdir(parents=True, exist_ok=True)
    if (REPO.parent / "shared").is_dir() and not (work / "shared").exists():
        (work / "shared").symlink_to(REPO.parent / "shared")  # the configs' ../shared, from each folder
    before = work / "tree-before"
    if not before.exists():
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(before), args.before], check=True)
    trees = {"before": before, "after": REPO}
    shared = work / "shared-resources"
    target = f"results/trials/{args.sweep}/sweep.json"
    if not shared.exists():
        # the inputs once, by their own rules
        config = load_config(REPO / args.config)
        model = config["models"][args.sweep.split("/")[2]]["path"]
        benchmark = f"resources/data/{config['benchmark']['name']}.jsonl.gz"
        snakemake(REPO, shared, args.config, model, benchmark)
    print(f"{args.sweep} of {args.config}: before = {args.before} (logger on), after = this tree; in {work}")
    runs = []
    for round_ in range(args.rounds):
        order = ["before", "after"] if round_ % 2 == 0 else ["after", "before"]
        for name in order:
            folder = work / f"r{round_}-{name}"
            subprocess.run(["rm", "-rf", str(folder)], check=True)
            folder.mkdir()
            (folder / "resources").symlink_to(shared / "resources")
            wall = snakemake(trees[name], folder, args.config, target)
            rates, states = throughputs(folder, args.sweep)
            runs.append((round_, name, rates, wall))
            shown = " ".join(f"b{b}={r:,.0f}" for b, r in rates.items())
            print(f"round {round_} {name:<6} {wall:6.0f} s  log_stats {sorted(map(str, states))}  {shown}", flush=True)
    sizes = sorted(runs[0][2])
    print("\nafter / before per round, and the median over rounds:")
    print(f"{'batch':>6} " + " ".join(f"{'round ' + str(r):>8}" for r in range(args.rounds)) + f" {'median':>8}")
    for b in sizes:
        ratios = []
        for r in range(args.rounds):
            of = {name: rates for round_, name, rates, _ in runs if round_ == r}
            ratios.append(of["after"][b] / of["before"][b])
        print(f"{b:>6} " + " ".join(f"{x:8.3f}" for x in ratios) + f" {statistics.median(ratios):8.3f}")
    for name in ("before", "after"):
        medians = [statistics.median(rates[b] for r, n, rates, _ in runs if n == name) for b in sizes]
        shown = " ".join(f"b{b}={m:,.0f}" for b, m in zip(sizes, medians, strict=True))
        print(f"{name:<6} median over rounds: {shown}")


if __name__ == "__main__":
    main()
