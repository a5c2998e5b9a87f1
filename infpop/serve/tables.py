"""The serving records of a run as tables and a figure (results/serve/):

- loadpoints.csv: one row per load-point record (records.tidy_row), its measures derived under the
  run's SLO and saturation tolerance;
- summary.csv: one row per (server, load point, load generator): the mean of each measure over the
  repetitions that ran (status ok) with its 95% confidence interval, and whether any repetition was
  over-saturated;
- harness_crosscheck.csv: the two load generators on vLLM's server, the same load point and
  repetition's stream sent by each (ratio InfPop's client / vLLM's benchmark per repetition, median
  and CI), and our measures of vLLM's benchmark's own per-request results against the summary
  vLLM's benchmark printed from them (a check of metrics.py against code we did not write);
- latency_throughput.png: TTFT and TPOT (p50 and p99) against the request throughput achieved,
  per server, over-saturated load points crossed.
"""

from __future__ import annotations

import csv
import json
import statistics
from collections import defaultdict
from pathlib import Path

from infpop.measure.records import RecordError
from infpop.measure.repetitions import summarise
from infpop.serve import records
from infpop.serve.metrics import Slo

#: What a summary row is about: a record's identity without its repetition.
GROUP = ["hardware", "engine", "model", "n_gpus", "settings", "request_rate", "max_concurrency", "harness"]
#: The measures the summary and the cross-check give.
MEASURES = [
    "request_throughput",
    "output_throughput",
    "request_goodput",
    "slo_attainment",
    "ttft_mean_ms",
    "ttft_p50_ms",
    "ttft_p99_ms",
    "tpot_mean_ms",
    "tpot_p50_ms",
    "tpot_p99_ms",
    "itl_mean_ms",
    "itl_p50_ms",
    "e2el_mean_ms",
    "e2el_p50_ms",
    "e2el_p99_ms",
]
#: Our measure -> vLLM's benchmark's name for it.
VLLM_NAMES = {
    "request_throughput": "request_throughput",
    "output_throughput": "output_throughput",
    "request_goodput": "request_goodput",
    **{
        f"{m}_{s}_ms": f"{'median' if s == 'p50' else s}_{m}_ms"
        for m in ("ttft", "tpot", "itl", "e2el")
        for s in ("mean", "p50", "p99")
    },
}
CROSSCHECK_COLUMNS = [
    "comparison",
    *GROUP[:-1],
    "measure",
    "rounds",
    "ours_median",
    "reference_median",
    "ratio_median",
    "ratio_ci_low",
    "ratio_ci_high",
]


def read_manifest(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise RecordError(f"{path}: cannot read serving manifest: {exc}") from None


def collect(manifests: list[Path]) -> list[tuple[dict, str]]:
    """(record, path) of every record the manifests list."""
    found = []
    for manifest in manifests:
        for name in read_manifest(manifest)["records"]:
            path = Path(manifest).parent / name
            found.append((records.read(path), str(path)))
    return found


def rows(collected: list[tuple[dict, str]], slo: Slo, saturation_tolerance: float) -> list[dict]:
    table = [records.tidy_row(record, slo, saturation_tolerance, path) for record, path in collected]
    return sorted(table, key=lambda r: tuple(str(r.get(k)) for k in [*GROUP, "rep"]))


def load(manifests: list[Path], section: dict) -> tuple[list[tuple[dict, str]], list[dict]]:
    """The serving records the manifests list and their tidy rows under the config's `serve`
    section (its SLO and saturation tolerance); a record that cannot be read raises RecordError."""
    collected = collect(manifests)
    return collected, rows(collected, Slo.from_config(section["slo"]), section["saturation_tolerance"])


def write_csv(table: list[dict], path: Path, columns: list[str] | None = None) -> None:
    """A table with the union of its rows' columns (in first-seen order) unless given."""
    if columns is None:
        columns = []
        for row in table:
            columns += [key for key in row if key not in columns]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns or ["status"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(table)


def _key(row: dict, names: list[str]) -> tuple:
    return tuple(row.get(name) for name in names)


def summary(table: list[dict]) -> list[dict]:
    """Each measure's mean over the repetitions that ran, with its 95% CI (repetitions.summarise)."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in table:
        groups[_key(row, GROUP)].append(row)
    out = []
    for key, members in groups.items():
        ran = [m for m in members if m["status"] == "ok"]
        row = dict(zip(GROUP, key, strict=True))
        row.update(
            repetitions=len(members),
            ok=len(ran),
            statuses=",".join(sorted({m["status"] for m in members})),
            over_saturated=any(bool(m.get("over_saturated")) for m in ran) if ran else None,
        )
        for measure in MEASURES:
            values = [m[measure] for m in ran if m.get(measure) is not None]
            spread = summarise(values)
            row[measure] = spread.mean
            row[f"{measure}_ci_low"] = spread.ci_low
            row[f"{measure}_ci_high"] = spread.ci_high
        out.append(row)
    return out


def _comparison_row(comparison: str, key: tuple, measure: str, pairs: list[tuple[float, float]]) -> dict:
    ratios = [a / b for a, b in pairs if a is not None and b not in (None, 0)]
    spread = summarise(ratios)
    return {
        "comparison": comparison,
        **dict(zip(GROUP[:-1], key, strict=True)),
        "measure": measure,
        "rounds": len(ratios),
        "ours_median": statistics.median([a for a, _ in pairs if a is not None]) if pairs else None,
        "reference_median": statistics.median([b for _, b in pairs if b is not None]) if pairs else None,
        "ratio_median": statistics.median(ratios) if ratios else None,
        "ratio_ci_low": spread.ci_low,
        "ratio_ci_high": spread.ci_high,
    }


def harness_crosscheck(table: list[dict], collected: list[tuple[dict, str]]) -> list[dict]:
    """InfPop's client against vLLM's benchmark (same server, load point and repetition), and our
    measures of vLLM's benchmark's requests against its own summary."""
    by_key = {(_key(row, GROUP[:-1]), row["rep"], row["harness"]): row for row in table if row["status"] == "ok"}
    clients: dict[tuple, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for (key, rep, harness), ours in by_key.items():
        theirs = by_key.get((key, rep, "vllm_bench"))
        if harness == "infpop" and theirs is not None:
            for measure in MEASURES:
                clients[key][measure].append((ours.get(measure), theirs.get(measure)))
    metrics: dict[tuple, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for record, _ in collected:
        own = record.get("harness_summary")
        if record["harness"] != "vllm_bench" or record["status"] != "ok" or not own:
            continue
        ours = records.tidy_row(record, _recorded_slo(record), record["config"]["saturation_tolerance"])
        key = _key(ours, GROUP[:-1])
        for measure, name in VLLM_NAMES.items():
            metrics[key][measure].append((ours.get(measure), own.get(name)))
    out = [
        _comparison_row("infpop client / vllm bench serve", key, m, pairs)
        for key, measures in clients.items()
        for m, pairs in measures.items()
    ]
    out += [
        _comparison_row("our measures / vllm bench's summary, same requests", key, m, pairs)
        for key, measures in metrics.items()
        for m, pairs in measures.items()
    ]
    return out


def _recorded_slo(record: dict) -> Slo:
    """The SLO the record's load generator was given (vLLM's benchmark computed its goodput so)."""
    return Slo.from_config(record["config"]["slo"])


def latency_throughput_png(table: list[dict], path) -> Path:
    """TTFT and TPOT (p50 solid, p99 dashed) against the achieved request throughput, one line per
    server and load generator, each concurrency limit its own line; over-saturated points crossed."""
    from infpop.figures import message_png, plt, save

    ran = [r for r in table if r["status"] == "ok" and r.get("request_throughput")]
    if not ran:
        return message_png(path, "Serving: latency against throughput", "no load point ran")
    lines: dict[tuple, list[dict]] = defaultdict(list)
    for row in ran:
        lines[(row["engine"], row["model"], row["settings"], row["harness"], row["max_concurrency"])].append(row)
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    for (engine, model, settings, harness, concurrency), members in sorted(lines.items(), key=lambda i: str(i[0])):
        members = sorted(members, key=lambda r: r["request_throughput"])
        x = [m["request_throughput"] for m in members]
        label = f"{engine} {model} {settings} ({harness}{'' if concurrency in (None, '') else f', c{concurrency}'})"
        for ax, measure in zip(axes, ("ttft", "tpot"), strict=True):
            (line,) = ax.plot(x, [m[f"{measure}_p50_ms"] for m in members], marker="o", label=label)
            ax.plot(x, [m[f"{measure}_p99_ms"] for m in members], linestyle="--", color=line.get_color())
            saturated = [m for m in members if m.get("over_saturated")]
            ax.scatter(
                [m["request_throughput"] for m in saturated],
                [m[f"{measure}_p50_ms"] for m in saturated],
                marker="x",
                s=90,
                color="black",
                zorder=3,
            )
    for ax, title in zip(axes, ("TTFT (ms)", "TPOT (ms)"), strict=True):
        ax.set_xlabel("requests completed per second")
        ax.set_ylabel(title)
        ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
    axes[0].set_title("time to first token: p50 (solid), p99 (dashed); x: over-saturated")
    axes[1].set_title("time per output token: p50 (solid), p99 (dashed)")
    axes[1].legend(fontsize=7, loc="best")
    return save(fig, path)
