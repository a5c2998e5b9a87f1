"""How bad input fares through Snakemake, in a tree of the workflow: each case of
tests/test_bad_inputs.py (the default config changed in one place, a duplicate key, a syntax
error, a bad command-line override), given to `snakemake -n`, is classified as

- planned: accepted, and the run planned (the worst: jobs would start);
- traceback: refused with a Python traceback;
- refused: refused, but the message does not name the key and where it was set;
- placed: refused with the key and its place (file:line, or the --config argument).

    python bench/bad_inputs.py [--tree DIR] [--only N]

--tree is a checkout of the workflow (default: this one); run it on an older commit's worktree to
compare (`git worktree add /tmp/old <commit>`). Prints one line per case, then the counts.
"""

from __future__ import annotations

import argparse
import collections
import re
import runpy
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


def cases() -> list[tuple[str, dict | str, list[str], str | None]]:
    """(name, config or YAML text, --config arguments, the key the message must name)."""
    sys.path[:0] = [str(REPO), str(REPO / "tests")]  # the test module imports infpop and its conftest
    tests = runpy.run_path(str(REPO / "tests" / "test_bad_inputs.py"))
    found = []
    for name, config, expected in tests["CASES"]:
        key = re.search(r"config key '([^']+)'", expected)
        found.append((name, config, [], key[1] if key else None))
    default = (REPO / "config.yaml").read_text()
    found += [
        (
            "a duplicate key",
            default.replace("max_new_tokens: [5]\n", "max_new_tokens: [5]\nbatch_sizes: [1]\n"),
            [],
            "batch_sizes",
        ),
        ("a tab in the YAML", default.replace("engines: [hf, vllm]\n", "engines:\n\t- hf\n"), [], "engines"),
        ("an unclosed bracket", default.replace("max_new_tokens: [5]\n", "max_new_tokens: [5\n"), [], "max_new_tokens"),
    ]
    for argument, key in [
        ('optimise={"tune": {"budget": "x"}}', "optimise.tune.budget"),
        ("batch_sizes=[1,2.5]", "batch_sizes[1]"),
        ("results_dir=", "results_dir"),
        ("n_gpus=[1,64]", "n_gpus[1]"),
        ('engine_args={"vllm": {"max_num_seqs": 0}}', "engine_args.vllm.max_num_seqs"),
        ("dtype=fp16", "dtype"),
    ]:
        found.append((f"--config {argument}", None, [argument], key))
    return found


def classify(done: subprocess.CompletedProcess, key: str | None, path: Path, arguments: list[str]) -> str:
    text = done.stdout + done.stderr
    if done.returncode == 0:
        return "planned"
    if "Traceback (most recent call last)" in text:
        return "traceback"
    place = rf"(--config |{re.escape(str(path))}:\d+)"
    if key is None or re.search(place + rf"[^\n]*{re.escape(key)}", text):
        return "placed" if re.search(place, text) else "refused"
    return "refused"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", default=str(REPO), help="the workflow checkout to run")
    parser.add_argument("--only", type=int, default=None, help="the first N cases only")
    args = parser.parse_args()
    snakefile = Path(args.tree) / "Snakefile"
    counts = collections.Counter()
    for name, config, arguments, key in cases()[: args.only]:
        with tempfile.TemporaryDirectory() as run:
            path = Path(run) / "bad.yaml"
            if config is None:
                given = ["--config", *arguments]
            else:
                path.write_text(config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False))
                given = ["--configfile", str(path)]
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "snakemake",
                    "-s",
                    str(snakefile),
                    "-n",
                    "--cores",
                    "1",
                    "--directory",
                    run,
                    *given,
                ],
                capture_output=True,
                text=True,
                timeout=300,
            )
            verdict = classify(done, key, path, arguments)
        counts[verdict] += 1
        print(f"{verdict:9} {name}", flush=True)
    total = sum(counts.values())
    print(f"\n{args.tree}: {total} bad inputs")
    for verdict in ("planned", "traceback", "refused", "placed"):
        print(f"  {verdict:9} {counts[verdict]:3}")


if __name__ == "__main__":
    main()
