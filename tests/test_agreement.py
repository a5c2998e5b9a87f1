"""Output agreement on known digests: each comparison's share, counted by hand."""

from __future__ import annotations

import pytest

from infpop.analysis.agreement import agreement_table


def trial(engine, batch, rep, digests, n_gpus=1):
    return dict(
        hardware="cpu",
        engine=engine,
        model="m",
        n_gpus=n_gpus,
        max_new_tokens=5,
        batch_size=batch,
        rep=rep,
        output_digests=digests,
    )


def shares(table, comparison):
    rows = table[table["comparison"] == comparison]
    return {(r.engine, r.batch_size, r.rep): (r.reference, r.n_prompts, r.equal_share) for r in rows.itertuples()}


def test_each_comparison_counts_the_prompts_that_agree():
    trials = [
        trial("hf", 1, 0, ["a", "b", "c", "d"]),
        trial("hf", 8, 0, ["a", "b", "x", "d"]),  # 3 of 4 equal to b1
        trial("hf", 8, 1, ["a", "y", "x", "z"]),  # 2 of 4 equal to its r0; 1 of 4 equal to b1
        trial("vllm", 1, 0, ["a", "b", "c", "d"]),
        trial("vllm", 8, 0, ["q", "b", "x", "d"]),  # 3 of 4 equal to hf b8 r0; 2 of 4 to its b1
    ]
    table = agreement_table(trials)
    assert shares(table, "batch_size_1") == {
        ("hf", 8, 0): ("b1 r0", 4, 0.75),
        ("hf", 8, 1): ("b1 r0", 4, 0.25),
        ("vllm", 8, 0): ("b1 r0", 4, 0.5),
    }
    assert shares(table, "repeat") == {("hf", 8, 1): ("b8 r0", 4, 0.5)}
    assert shares(table, "hf_vs_vllm") == {
        ("hf", 1, 0): ("vllm b1 r0", 4, 1.0),
        ("hf", 8, 0): ("vllm b8 r0", 4, 0.75),
    }


def test_shares_are_over_the_prompts_both_trials_completed():
    # an OOM part-way keeps the digests of the batches before it: 2 prompts compared, 1 equal
    table = agreement_table([trial("hf", 1, 0, ["a", "b", "c", "d"]), trial("hf", 4, 0, ["a", "z"])])
    assert shares(table, "batch_size_1") == {("hf", 4, 0): ("b1 r0", 2, 0.5)}


def test_trials_without_digests_and_other_gpu_counts_are_not_compared():
    table = agreement_table(
        [
            trial("hf", 1, 0, ["a"]),
            trial("hf", 8, 0, []),  # no digests (a failed load): nothing to compare
            trial("vllm", 8, 0, ["a"], n_gpus=2),  # hf at g1 has no vLLM g1 partner; no vLLM b1 at g2
        ]
    )
    assert table.empty


@pytest.mark.parametrize("digests", [["a"] * 3, ["b"] * 3])
def test_a_trial_is_never_compared_with_itself(digests):
    table = agreement_table([trial("hf", 1, 0, digests)])
    assert table.empty
