"""The cross-check's arithmetic and command lines, on known inputs (the real comparison runs in
the end-to-end test, tests/test_workflow.py)."""

from __future__ import annotations

import random
import statistics

import pytest

from infpop.measure.crosscheck import _row, bench_arguments, engine_flags, sharegpt_dataset
from infpop.measure.grid import Sweep

SWEEP = Sweep("cpu", "vllm", "tiny", 1)


def row(pairs):
    return _row(SWEEP, 5, 512, "ours", "ref", pairs, None, "a note")


def test_ratio_is_the_median_of_the_rounds_with_its_interval():
    result = row([(100.0, 100.0), (90.0, 100.0), (104.0, 100.0)])
    assert result["ratio"] == pytest.approx(1.0) and result["rounds"] == 3
    assert result["ours_median_tokens_per_s"] == 100.0 and result["reference_median_tokens_per_s"] == 100.0
    assert result["ratio_ci_low"] < statistics.mean([1.0, 0.9, 1.04]) < result["ratio_ci_high"]
    assert result["within_5pct"] is True and result["note"] == "a note"


@pytest.mark.parametrize("factor", [0.82, 1.06, 0.01, 100.0])
def test_a_median_beyond_five_percent_is_flagged_in_the_table(factor):
    result = row([(100.0 * factor, 100.0), (101.0 * factor, 101.0)])
    assert result["within_5pct"] is False
    assert result["note"].startswith(f"median ratio {factor:.3f} is {abs(factor - 1):.1%} from 1, beyond the 5%")


def test_rounds_where_a_side_failed_are_left_out():
    result = row([(None, 100.0), (96.0, 100.0), (97.0, None)])
    assert result["rounds"] == 1 and result["ratio"] == pytest.approx(0.96) and result["within_5pct"] is True


def test_sharegpt_dataset_is_put_back_in_our_order_by_vllms_shuffle():
    prompts = [f"prompt {i}" for i in range(50)]
    dataset = sharegpt_dataset(prompts, seed=0)
    random.seed(0)  # what vLLM's ShareGPT loader does before it samples
    random.shuffle(dataset)
    assert [entry["conversations"][0]["value"] for entry in dataset] == prompts


def test_bench_runs_the_engine_our_trials_run():
    config = {
        "dtype": "float32",
        "warmup": {"batches": 1, "batch_size": 8},
        "engine_args": {"vllm": {"enable_prefix_caching": False, "gpu_memory_utilization": 0.15}},
    }
    arguments = bench_arguments(config, "/m", "/d.json", 512, 5, 2, "/o.json")
    assert "--disable-log-stats" in arguments  # EngineArgs' default keeps the statistics logger on
    assert arguments[arguments.index("--num-warmups") + 1] == "8"
    assert arguments[arguments.index("--tensor-parallel-size") + 1] == "2"
    assert arguments[-3:] == ["--no-enable-prefix-caching", "--gpu-memory-utilization", "0.15"]


def test_engine_flags_spell_booleans_and_structures_as_vllm_reads_them():
    assert engine_flags({"enable_chunked_prefill": True, "max_num_seqs": 8, "override": {"a": 1}}) == [
        "--enable-chunked-prefill",
        "--max-num-seqs",
        "8",
        "--override",
        '{"a": 1}',
    ]


def test_bystanders_name_a_process_that_ran_beside_the_measured_one():
    """Real processes: a busy loop beside a sleeping 'measured' process is reported with about a
    CPU-second per second; the measured process and its children are not."""
    import subprocess
    import sys

    from infpop.measure.bystanders import Bystanders, describe

    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        measured = subprocess.Popen([sys.executable, "-c", "import subprocess; subprocess.run(['sleep', '2'])"])
        watch = Bystanders(measured.pid, interval_s=0.2).start()
        measured.wait()
        found = watch.stop()
    finally:
        busy.kill()
    by_pid = {b.pid: b for b in found}
    # (a busier process of the shared machine may come first)
    assert by_pid[busy.pid].cpu_s > 0.5 and measured.pid not in by_pid
    assert [b.cpu_s for b in found] == sorted((b.cpu_s for b in found), reverse=True)
    assert "while True" in describe([by_pid[busy.pid]], 2.0)


def test_the_vllm_rounds_rotate_the_sides_and_pair_each_rounds_figures(
    tmp_path, config_for, benchmark_file, monkeypatch
):
    """crosscheck_vllm's rounds without an engine (the end-to-end test runs one real round): each
    round runs every side once, in an order rotated from round to round, our side through the
    sweeps' supervisor at the batch size of every prompt; the table pairs each round's figures."""
    from infpop.measure import crosscheck

    config = config_for(engines=["vllm"], crosscheck={"repeats": 3, "prompts": 6})
    ours = {0: 100.0, 1: 90.0, 2: 110.0}
    theirs = {"bare": {0: 100.0, 1: 100.0, 2: 100.0}, "bench": {0: 50.0, 1: 45.0, 2: 50.0}}
    order = []

    class Supervisor:
        def __init__(self, measuring, sweep, out, benchmark_file, worker_stderr=None):
            assert measuring["repetitions"] == 3 and measuring["batch_sizes"] == [6]
            assert measuring["benchmark"]["limit"] == 6 and measuring["budget"]["sequential"] is None

        def measure(self, key, prefix):
            order.append(("ours", key.rep))
            assert (key.batch_size, key.max_new_tokens) == (6, 5)
            digests = ["a"] * 6 if key.rep else ["a"] * 5 + ["b"]  # round 0: one output differs
            return {"status": "ok", "throughput_tokens_per_s": ours[key.rep], "output_digests": digests}, False

        def close(self):
            pass

    def run_reference(side, measuring, sweep, arguments, out, timeout_s):
        r = int(out.name.rsplit("_r", 1)[1])
        order.append((side, r))
        assert str(out.parent / f"{side}_r{r}.json") == arguments[arguments.index("--output-json") + 1]
        figures = {"output_tokens_per_s": theirs[side][r], "num_requests": 6, "bystanders": "none"}
        return {**figures, "output_digests": ["a"] * 6} if side == "bare" else figures

    monkeypatch.setattr(crosscheck, "Supervisor", Supervisor)
    monkeypatch.setattr(crosscheck, "run_reference", run_reference)
    result = crosscheck.crosscheck_vllm(config, Sweep("cpu", "vllm", "tiny", 1), tmp_path, benchmark_file, 5, 3)
    assert order == [
        ("ours", 0), ("bare", 0), ("bench", 0),
        ("bare", 1), ("bench", 1), ("ours", 1),
        ("bench", 2), ("ours", 2), ("bare", 2),
    ]  # fmt: skip
    bare, bench = result["rows"]
    assert bare["reference"] == crosscheck.BARE and bench["reference"] == crosscheck.BENCH
    assert bare["rounds"] == bench["rounds"] == 3 and bare["batch_size"] == 6
    assert bare["ratio"] == pytest.approx(1.0) and bench["ratio"] == pytest.approx(2.0)  # medians of 1/.9/1.1, 2/2/2.2
    assert bare["ratio_ci_low"] < 1.0 < bare["ratio_ci_high"] and bench["ratio_ci_low"] <= 2.0 <= bench["ratio_ci_high"]
    assert bare["outputs_equal_share"] == pytest.approx(17 / 18) and bench["outputs_equal_share"] is None
    assert bare["within_5pct"] is True and bench["within_5pct"] is False
    assert result["ours"] == [str(tmp_path / f"t5/b6_r{r}.json") for r in range(3)]
