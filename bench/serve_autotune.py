"""vLLM's auto_tune against InfPop's tuning on live vLLM servers (infpop/serve/autotune.py): both
algorithms over max_num_seqs x max_num_batched_tokens under one P99 end-to-end latency limit, on
the same servers and load generator, auto_tune first unless --first infpop (the second reuses the
load points the first measured); then each side's best measured again over --confirm rounds of
alternating order (serve.tuning.confirm; records in the output folder's confirm/); then the search
records replayed, which must give the same answers. Prints each side's best setting, goodput with its
CI (the load point's, and over the confirmation's rounds), invocations and device-minutes, and writes
autotune_comparison.csv, autotune_probes.csv and capacity.csv (live and replay rows, marked) to the output folder.

    python bench/serve_autotune.py --directory RUN [--model tiny-llama] [--seqs 4 32] [--tokens 2048]
                                   [--requests 60] [--e2el-ms 300] [--target 0.8] [--harness infpop]
                                   [--minutes 9] [--no-share] [--resolution 0.05] [--no-line-search]
                                   [--first auto_tune|infpop] [--confirm 3]

RUN is a folder where configs/serve.yaml's models were built (resources/models/ and resources/data/,
as Snakemake builds them). The records go to RUN/bench/serve_autotune/.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from infpop.config import load_config  # noqa: E402
from infpop.logs import setup  # noqa: E402
from infpop.serve import autotune, records  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--directory", type=Path, required=True)
    parser.add_argument("--model", default="tiny-llama")
    parser.add_argument("--seqs", type=int, nargs="+", default=[4, 32])
    parser.add_argument("--tokens", type=int, nargs="+", default=[2048])
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--e2el-ms", type=float, default=300.0)
    parser.add_argument("--target", type=float, default=0.8)
    parser.add_argument("--harness", default="infpop", choices=["infpop", "vllm_bench"])
    parser.add_argument("--no-share", action="store_true", help="InfPop's tuning starts a server per setting too")
    parser.add_argument("--resolution", type=float, default=0.05, help="serve.tuning.resolution (0: to 1 req/s)")
    parser.add_argument("--no-line-search", action="store_true", help="InfPop's tuning measures every max_num_seqs")
    parser.add_argument(
        "--first", default="auto_tune", choices=["auto_tune", "infpop"], help="which algorithm runs first"
    )
    parser.add_argument("--minutes", type=float, default=9.0, help="the searches measure nothing after this")
    parser.add_argument(
        "--confirm", type=int, default=3, help="rounds of each side's best measured again after both (0: none)"
    )
    args = parser.parse_args()
    # `timeout` stops this with SIGTERM: exit through the sessions' cleanup, which stops the server
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    os.chdir(args.directory)
    out = Path("bench/serve_autotune")
    setup(log_path=out / "autotune.log")
    raw = yaml.safe_load((REPO / "configs/serve.yaml").read_text())
    raw["serve"].update(
        engines=["vllm"],
        models=[args.model],
        engine_arg_axes={"vllm": {"max_num_seqs": args.seqs, "max_num_batched_tokens": args.tokens}},
        requests=args.requests,
        harnesses={"vllm": [args.harness], "hf": ["infpop"]},
        tuning={
            "mode": "live",
            "e2el_ms": args.e2el_ms,
            "target_share": args.target,
            "harness": args.harness,
            "share_servers": not args.no_share,
            "resolution": args.resolution,
            "line_search": not args.no_line_search,
            "first": args.first,
            "confirm": args.confirm,
        },
    )
    config = load_config(raw)
    started = time.monotonic()
    rows, probes, capacities = autotune.run_live(
        config,
        out / "records",
        Path(f"resources/data/{config['benchmark']['name']}.jsonl.gz"),
        out / "confirm",
        deadline=started + args.minutes * 60,
    )
    wall = time.monotonic() - started
    found = sorted((out / "records").rglob("r*_rep*.json"))
    collected = [(records.read(path), str(path)) for path in found]
    replayed, replay_probes, replay_capacities = autotune.run_replay(config, collected)
    autotune.write_csv(rows + replayed, out / "autotune_comparison.csv", autotune.COLUMNS)
    autotune.write_csv(probes + replay_probes, out / "autotune_probes.csv", autotune.PROBE_COLUMNS)
    autotune.write_csv(capacities + replay_capacities, out / "capacity.csv", autotune.CAPACITY_COLUMNS)
    autotune.probes_png(probes + replay_probes, out / "autotune_probes.png")
    print(f"live comparison: {wall:.0f} s wall, {len(collected)} load-point records in {out / 'records'}")
    for row in rows + replayed:
        print(
            f"[{row['mode']}] {row['model']}, P99 E2EL <= {row['slo_e2el_ms']:g} ms, {row['settings_in_grid']} settings"
        )
        for side in ("auto_tune", "infpop"):
            goodput = row[f"{side}_goodput"]
            ci = (row[f"{side}_goodput_ci_low"], row[f"{side}_goodput_ci_high"])
            text = f"{goodput:.2f} req/s (95% CI {ci[0]:.2f}-{ci[1]:.2f})" if goodput is not None else "-"
            print(
                f"  {side:<9} best {row[f'{side}_setting']} at rate {row[f'{side}_rate']}: goodput {text}; "
                f"{row[f'{side}_invocations']} load points ({row[f'{side}_measured_now']} measured now, "
                f"{row[f'{side}_missing']} missing), {row[f'{side}_servers']} servers, "
                f"{row[f'{side}_device_minutes']:.2f} device-minutes"
                + (
                    f"; {row['infpop_inferred']} answered without a load point, {row['infpop_skipped']} skipped"
                    if side == "infpop"
                    else ""
                )
            )
            if row[f"{side}_confirmed_goodput"] is not None:
                low, high = row[f"{side}_confirmed_ci_low"], row[f"{side}_confirmed_ci_high"]
                print(
                    f"  {'':<9} confirmed over {row['confirm_rounds']} rounds: goodput "
                    f"{row[f'{side}_confirmed_goodput']:.2f} req/s (95% CI {low:.2f}-{high:.2f}), held its own rule "
                    f"in {row[f'{side}_confirmed_holds']} of {row['confirm_rounds']}"
                )
        if row["confirm_rounds"]:
            print(f"  confirmation: {row['confirm_device_minutes']:.2f} device-minutes (neither side's)")
        print(
            f"  same setting {row['same_setting']}, within the load point's CI {row['within_load_point_ci']}, "
            f"within CI {row['within_ci']}, invocations ratio "
            f"{row['invocation_ratio']:.2f}, device-minutes ratio {row['device_minutes_ratio']:.2f}, "
            f"goal met {row['goal_met']}"
        )


if __name__ == "__main__":
    main()
