"""vLLM's load time with its default compilation and with `enforce_eager`, side by side in one run.

Each round loads the model twice, each time in a fresh process (`LLM(...)` as our trials create it:
float32, prefix caching off, the CPU backend's memory share of the default config), once per mode in
an order rotated from round to round, then warms up and times one `generate` of 64 prompts. The
tests run vLLM eagerly (tests/conftest.py, VLLM_TEST_ARGS) on these figures. Prints every run, then
per mode the median load and generate seconds, and the median per-round ratio eager / default.

    python bench/vllm_load.py --model FOLDER [--rounds 3] [--tokens 5]

FOLDER: a model folder vLLM loads, e.g. resources/models/tiny-llama after `make run`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

MODES = {"default": {}, "eager": {"enforce_eager": True}}

# One load and one timed generate, in a process of its own (vLLM's workers are spawned: the guard).
CHILD = r"""
import json, sys, time
if __name__ == "__main__":
    from vllm import LLM, SamplingParams
    model, tokens, extra = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
    started = time.perf_counter()
    llm = LLM(model=model, dtype="float32", gpu_memory_utilization=0.15, enable_prefix_caching=False, **extra)
    loaded = time.perf_counter()
    prompts = [f"def f{i}(x):" for i in range(64)]
    params = SamplingParams(max_tokens=tokens, ignore_eos=True, temperature=0.0)
    llm.generate(prompts[:8], params)  # warm-up
    begin = time.perf_counter()
    llm.generate(prompts, params)
    print("RESULT " + json.dumps({"load_s": loaded - started, "generate_s": time.perf_counter() - begin}))
"""


def run(model: str, tokens: int, mode: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, model, str(tokens), json.dumps(MODES[mode])],
        capture_output=True,
        text=True,
        timeout=900,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"{mode}: the load failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a model folder vLLM loads")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=5, help="new tokens per prompt of the timed generate")
    args = parser.parse_args()
    results: dict[str, list[dict]] = {mode: [] for mode in MODES}
    modes = list(MODES)
    for r in range(args.rounds):
        for mode in modes[r % 2 :] + modes[: r % 2]:
            result = run(args.model, args.tokens, mode)
            results[mode].append(result)
            load, generate = result["load_s"], result["generate_s"]
            print(f"round {r} {mode:>7}: load {load:6.1f} s, generate {generate:.3f} s", flush=True)
    for mode, runs in results.items():
        load = statistics.median(x["load_s"] for x in runs)
        generate = statistics.median(x["generate_s"] for x in runs)
        print(f"{mode:>7}: median load {load:.1f} s, median generate of 64 prompts {generate:.3f} s")
    for measure in ("load_s", "generate_s"):
        ratios = [e[measure] / d[measure] for e, d in zip(results["eager"], results["default"], strict=True)]
        rounds = ", ".join(f"{x:.2f}" for x in ratios)
        print(f"eager / default, {measure}: median {statistics.median(ratios):.2f} (rounds: {rounds})")


if __name__ == "__main__":
    main()
