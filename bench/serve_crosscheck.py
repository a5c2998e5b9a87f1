"""The two load generators side by side on one vLLM server: InfPop's OpenAI client and vLLM's own
serving benchmark send the same request stream (prompts, output lengths, seed, arrival times) to
the same server, one after the other, in an order that alternates from round to round; per rate
and measure, each side's median over the rounds and the ratio ours / vLLM's (its median, and the
95% CI of its mean).

    python bench/serve_crosscheck.py --directory RUN [--model tiny-llama] [--rates 4 16 inf]
                                     [--rounds 5] [--requests 32]

RUN is a folder where configs/serve.yaml's models were built (resources/models/, as Snakemake
builds them: `snakemake --configfile configs/serve.yaml --directory RUN resources/models/tiny-llama`).
The records go to RUN/bench/serve_crosscheck/.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from infpop.config import load_config  # noqa: E402
from infpop.logs import setup  # noqa: E402
from infpop.measure.repetitions import summarise  # noqa: E402
from infpop.serve.metrics import flatten  # noqa: E402
from infpop.serve.plan import LoadPoint, ServeJob, rate_text  # noqa: E402
from infpop.serve.session import ServeSession  # noqa: E402

MEASURES = [
    "request_throughput",
    "output_throughput",
    "ttft_p50_ms",
    "ttft_p99_ms",
    "tpot_p50_ms",
    "itl_p50_ms",
    "e2el_p50_ms",
    "e2el_p99_ms",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--directory", type=Path, required=True)
    parser.add_argument("--model", default="tiny-llama")
    parser.add_argument("--rates", nargs="+", default=["4", "16", "inf"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=32)
    args = parser.parse_args()
    os.chdir(args.directory)
    out = Path("bench/serve_crosscheck")
    setup(log_path=out / "crosscheck.log")
    raw = yaml.safe_load((REPO / "configs/serve.yaml").read_text())
    raw["serve"].update(engine_arg_axes={}, requests=args.requests, models=[args.model])
    config = load_config(raw)
    job = ServeJob("cpu", "vllm", args.model, 1, "default")
    rates = [float(r) for r in args.rates]
    figures: dict[tuple, dict[str, list]] = {}
    with ServeSession(config, job, out, Path("resources/data/humaneval_single_line_infilling.jsonl.gz")) as session:
        for r in range(args.rounds):
            order = ["vllm_bench", "infpop"] if r % 2 == 0 else ["infpop", "vllm_bench"]
            for rate in rates:
                for harness in order:
                    record, _ = session.measure(LoadPoint(rate), r, harness)
                    flat = flatten(record["measures"] or {})
                    for m in MEASURES:
                        figures.setdefault((rate, m), {}).setdefault(harness, []).append(flat.get(m))
        start = session.server_starts
    print(f"vLLM server ({args.model}, default settings) started in {', '.join(f'{s:.0f}' for s in start)} s")
    print_side_by_side(figures, "infpop", "vllm_bench", ("infpop med", "vllm med"))


def print_side_by_side(figures: dict[tuple, dict[str, list]], ours: str, theirs: str, headers: tuple[str, str]):
    """Per (rate, measure) of {(rate, measure): {side: [value per round]}}: each side's median over
    the rounds, and the ratio ours / theirs per round (its median and the 95% CI of its mean)."""
    print(f"{'rate':>5} {'measure':<20} {headers[0]:>11} {headers[1]:>10} {'ratio med':>9} {'ratio 95% CI':>17}")
    for (rate, measure), sides in figures.items():
        a, b = sides[ours], sides[theirs]
        ratios = [x / y for x, y in zip(a, b, strict=True) if x is not None and y]
        spread = summarise(ratios)
        ci = f"{spread.ci_low:.3f}-{spread.ci_high:.3f}" if spread.ci_low is not None else "-"
        print(
            f"{rate_text(rate):>5} {measure:<20} {_median(a):>11} {_median(b):>10} {_median(ratios, '.3f'):>9} {ci:>17}"
        )


def _median(values: list, spec: str = ".2f") -> str:
    """The median of the values measured ('-' when a load point failed every round)."""
    kept = [v for v in values if v is not None]
    return format(statistics.median(kept), spec) if kept else "-"


if __name__ == "__main__":
    main()
