"""Does a smaller max_num_seqs emulated on a bigger server behave as a server started with it? And a
smaller max_num_batched_tokens, where the bigger server's steps never reached it?
Two vLLM servers run side by side: one started with max_num_seqs = SEQS and max_num_batched_tokens
= TOKENS (the real setting) and one with SERVER_SEQS and SERVER_TOKENS, on which InfPop's client
keeps at most SEQS requests in flight and times each request from its arrival
(plan.LoadPoint.emulated_max_num_seqs, what serve.tuning.share_servers does). Both get the same
request stream at each rate, in an order that alternates from round to round. Per rate and measure:
each side's median over the rounds, the ratio emulated / real (its median and the 95% CI of its
mean, as serve_crosscheck.py prints them), and whether InfPop's tuning rule passes each side's load
point. With two budgets, per round also whether the bigger server's steps stayed within TOKENS
(Probe.within_budget: where they did, SharedServers lets its load point stand for the
setting), with its largest step.

    python bench/serve_emulation.py --directory RUN [--model tiny-llama] [--seqs 4]
                                    [--server-seqs 32] [--tokens T] [--server-tokens T]
                                    [--rates 10 20 30 inf] [--rounds 3]
                                    [--requests 60] [--e2el-ms 300] [--target 0.8]

RUN is a folder where configs/serve.yaml's models were built (resources/models/ and resources/data/,
as Snakemake builds them). The records go to RUN/bench/serve_emulation/.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))  # serve_crosscheck.py; runpy.run_path does not add the script's folder

from serve_crosscheck import print_side_by_side  # noqa: E402

from infpop.config import load_config  # noqa: E402
from infpop.logs import setup  # noqa: E402
from infpop.serve.analysis import Probe  # noqa: E402
from infpop.serve.autotune import live_cases  # noqa: E402
from infpop.serve.metrics import Slo, flatten  # noqa: E402
from infpop.serve.plan import LoadPoint, ServeJob, rate_text  # noqa: E402
from infpop.serve.session import ServeSession  # noqa: E402

MEASURES = [
    "request_throughput",
    "request_goodput",
    "slo_attainment",
    "ttft_p50_ms",
    "tpot_p50_ms",
    "e2el_p50_ms",
    "e2el_p90_ms",
    "e2el_p99_ms",
    "peak_in_flight",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--directory", type=Path, required=True)
    parser.add_argument("--model", default="tiny-llama")
    parser.add_argument("--seqs", type=int, default=4)
    parser.add_argument("--server-seqs", type=int, default=32)
    parser.add_argument("--rates", nargs="+", default=["10", "20", "30", "inf"])
    parser.add_argument("--tokens", type=int, default=None, help="max_num_batched_tokens of the real server")
    parser.add_argument("--server-tokens", type=int, default=None, help="... of the shared server (default: TOKENS)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--e2el-ms", type=float, default=300.0)
    parser.add_argument("--target", type=float, default=0.8)
    args = parser.parse_args()
    os.chdir(args.directory)
    out = Path("bench/serve_emulation")
    setup(log_path=out / "emulation.log")
    raw = yaml.safe_load((REPO / "configs/serve.yaml").read_text())
    server_tokens = args.server_tokens or args.tokens
    tokens = {args.tokens, server_tokens} - {None}
    budgets = {"max_num_batched_tokens": sorted(tokens)} if tokens else {}
    raw["serve"].update(
        engines=["vllm"],
        models=[args.model],
        engine_arg_axes={"vllm": {"max_num_seqs": sorted({args.seqs, args.server_seqs}), **budgets}},
        requests=args.requests,
        slo={"e2el_ms": args.e2el_ms},
        harnesses={"vllm": ["infpop"], "hf": ["infpop"]},
    )
    config = load_config(raw)
    slo, tolerance = Slo(e2el_ms=args.e2el_ms), config["serve"]["saturation_tolerance"]
    benchmark = Path(f"resources/data/{config['benchmark']['name']}.jsonl.gz")
    rates = [float(r) for r in args.rates]
    figures: dict[tuple, dict[str, list]] = {}
    passes: dict[tuple, list] = {}

    grid = next(iter(live_cases(config).values()))

    def session(seqs: int, budget: int | None) -> ServeSession:
        knobs = {"max_num_seqs": seqs, **({"max_num_batched_tokens": budget} if budget else {})}
        label = next(s.label for s in grid if dict(s.knobs) == knobs)
        job = ServeJob("cpu", "vllm", args.model, 1, label)
        return ServeSession(config, job, out / job.relpath, benchmark)

    stands: dict[float, list] = {}
    emulated = args.seqs if args.seqs < args.server_seqs else None
    with session(args.seqs, args.tokens) as real, session(args.server_seqs, server_tokens) as shared:
        sides = {
            "real": lambda rate, rep: real.measure(LoadPoint(rate), rep, "infpop")[0],
            # on the server's own max_num_seqs, no emulation (as SharedServers measures it)
            "emulated": lambda rate, rep: shared.measure(LoadPoint(rate, None, emulated), rep, "infpop")[0],
        }
        for r in range(args.rounds):
            order = ["real", "emulated"] if r % 2 == 0 else ["emulated", "real"]
            for rate in rates:
                for side in order:
                    record = sides[side](rate, r)
                    flat = flatten(record["measures"] or {})
                    for m in MEASURES:
                        figures.setdefault((rate, m), {}).setdefault(side, []).append(flat.get(m))
                    probe = Probe.from_records(rate, [record], slo, tolerance)
                    passes.setdefault((rate, side), []).append(probe.passes(args.target))
                    if side == "emulated" and args.tokens and server_tokens != args.tokens:
                        within = probe.within_budget(args.tokens, server_tokens)
                        stands.setdefault(rate, []).append(f"{within} (<= {probe.largest_step})")
        starts = real.server_starts + shared.server_starts
    print(
        f"vLLM servers ({args.model}): max_num_seqs={args.seqs}, max_num_batched_tokens={args.tokens or 'default'} "
        f"against {args.seqs} emulated on max_num_seqs={args.server_seqs}, max_num_batched_tokens="
        f"{server_tokens or 'default'}; started in {', '.join(f'{s:.0f}' for s in starts)} s; "
        f"{args.requests} requests a load point, P99 E2EL limit {args.e2el_ms:g} ms"
    )
    print_side_by_side(figures, "emulated", "real", ("emulated med", "real med"))
    print(f"InfPop's rule (goodput's lower bound >= {args.target:g} x rate) per round:")
    for rate in rates:
        print(f"{rate_text(rate):>5} real {passes[(rate, 'real')]}  emulated {passes[(rate, 'emulated')]}")
    if stands:
        print(
            f"the shared server's steps within max_num_batched_tokens={args.tokens} (largest step's bucket) per round:"
        )
        for rate, verdicts in stands.items():
            print(f"{rate_text(rate):>5} {verdicts}")


if __name__ == "__main__":
    main()
