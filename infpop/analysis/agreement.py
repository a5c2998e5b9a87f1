"""Output agreement: do the engines generate the same greedy tokens at every batch size?

Each trial record keeps a digest of every prompt's generated token ids (`output_digests`, in the
benchmark's order). Greedy decoding is deterministic in exact arithmetic, but batching changes
the numerics (padding, kernel choice, reduction order), so outputs can change with the batch size,
between repetitions, and between engines. No throughput tool reports that; here it is:

- `batch_size_1`: the share of prompts whose output equals the same engine's (and GPU count's)
  batch-size-1 output (its first repetition);
- `repeat`: the share equal to the same configuration's first repetition;
- `hf_vs_vllm`: the share where hf and vLLM agree, at the same batch size (first repetitions, the
  same GPU count).
Shares are over the prompts both trials completed.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from infpop.figures import batch_size_axis, save, say

#: What names the trial compared, in the table's order.
KEY_COLUMNS = ("hardware", "model", "engine", "n_gpus", "max_new_tokens", "batch_size", "rep")
COLUMNS = ["comparison", *KEY_COLUMNS, "reference", "n_prompts", "equal_share"]


def _share(a: list[str], b: list[str]) -> tuple[int, float | None]:
    n = min(len(a), len(b))
    return n, (sum(x == y for x, y in zip(a, b, strict=False)) / n if n else None)


def agreement_table(trials: list[dict]) -> pd.DataFrame:
    """The three comparisons over the trial records that carry output digests."""
    by_key = {
        (r["hardware"], r["engine"], r["model"], r["n_gpus"], r["max_new_tokens"], r["batch_size"], r["rep"]): r
        for r in trials
        if r.get("output_digests")
    }
    rows = []
    for (hardware, engine, model, n_gpus, tokens, batch, rep), record in sorted(by_key.items()):
        base = dict(zip(KEY_COLUMNS, (hardware, model, engine, n_gpus, tokens, batch, rep), strict=True))
        references = [("batch_size_1", (hardware, engine, model, n_gpus, tokens, 1, 0), "b1 r0")]
        if rep > 0:
            references.append(("repeat", (hardware, engine, model, n_gpus, tokens, batch, 0), f"b{batch} r0"))
        if engine == "hf" and rep == 0:
            references.append(("hf_vs_vllm", (hardware, "vllm", model, n_gpus, tokens, batch, 0), f"vllm b{batch} r0"))
        for comparison, key, label in references:
            other = by_key.get(key)
            if other is None or other is record:
                continue
            n, share = _share(record["output_digests"], other["output_digests"])
            rows.append({"comparison": comparison, **base, "reference": label, "n_prompts": n, "equal_share": share})
    return pd.DataFrame(rows, columns=COLUMNS)


def agreement_png(table: pd.DataFrame, path) -> None:
    """Share of equal outputs against batch size: each engine against its own batch-size-1 output,
    and hf against vLLM (first repetitions)."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    first = table[table["rep"] == 0]
    for (comparison, hardware, model, engine, n_gpus, tokens), group in first.groupby(
        ["comparison", "hardware", "model", "engine", "n_gpus", "max_new_tokens"], sort=True
    ):
        if comparison == "repeat":
            continue
        label = (
            f"{engine} g{n_gpus} vs its batch size 1" if comparison == "batch_size_1" else f"hf vs vLLM g{n_gpus}"
        ) + f" ({hardware}, {model}, t{tokens})"
        group = group.sort_values("batch_size")
        ax.plot(
            group["batch_size"],
            group["equal_share"] * 100,
            marker="o",
            ms=4,
            ls="--" if comparison == "hf_vs_vllm" else "-",
            label=label,
        )
    if first.empty:
        say(ax, "insufficient data: no trial with output digests")
    else:
        batch_size_axis(ax, first["batch_size"].unique())
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    ax.set_ylabel("prompts with equal greedy output (%)")
    ax.set_ylim(0, 105)
    ax.set_title("Output agreement of greedy decoding across batch sizes and engines", fontsize=10)
    save(fig, path)
