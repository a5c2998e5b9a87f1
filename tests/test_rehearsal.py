"""The rehearsal engine (infpop/measure/engines/rehearsal.py): the trial it looks up, per-batch
times that sum to the recorded throughput, the recorded statuses (the crash through a real worker
process), seeded noise, what the table lacks; a rehearsing sweep's records and manifest; measured
and simulated records that refuse to mix; the rehearsal's config checks and its dry run (the
paper's jobs, none asking for a GPU). The engine is exercised directly (no process) where a
test isolates its answers, and through the real worker and supervisor otherwise: neither loads a
model."""

from __future__ import annotations

import csv
import json
import math
import re
import statistics
from pathlib import Path

import pytest
import yaml
from conftest import REPO, needs_shared
from test_workflow import job_counts, snakemake

from infpop.config import ConfigError, load_config
from infpop.measure import records
from infpop.measure.aggregate import collect_rows
from infpop.measure.engines import EngineSpec
from infpop.measure.engines import rehearsal as rh
from infpop.measure.engines.base import OutOfMemory
from infpop.measure.grid import Sweep, TrialKey
from infpop.measure.sweep import run_sweep
from infpop.trials import TIDY_COLUMNS

PROMPTS = 23
#: (hardware, engine, model, n_gpus, max_new_tokens, batch_size, rep, status, throughput[, error])
ROWS = [
    ("a100", "hf", "m", 1, 5, 1, 0, "ok", 10.0),
    ("a100", "hf", "m", 1, 5, 4, 0, "ok", 20.0),  # a re-run of b4: the replay keeps the last
    ("a100", "hf", "m", 1, 5, 4, 1, "ok", 40.0),
    ("a100", "hf", "m", 1, 5, 8, 0, "oom", 50.0),  # out of memory part-way: the batches before carry 50
    ("a100", "hf", "m", 1, 5, 16, 0, "oom", None),
    ("a100", "hf", "m", 1, 10, 1, 0, "error", None, "CUDA error"),
    ("a100", "hf", "m", 1, 10, 4, 0, "crashed", None),
    ("a100", "hf", "m", 1, 10, 8, 0, "timeout", 30.0),
    ("a100", "hf", "m", 1, 10, 16, 0, "unsupported", None, "heads not divisible"),
    # t10 b2 and everything at 2 GPUs: not in the table
]


def write_table(path: Path, rows=ROWS) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=TIDY_COLUMNS)
        writer.writeheader()
        for row in rows:
            keys = [*rh.NEEDED_COLUMNS, "error"]
            writer.writerow(dict(zip(keys, row, strict=False)))
    return path


def engine(table: Path, n_gpus: int = 1, duplicates: str = "last", cv: float = 0.1, seed: int = 0) -> rh.Engine:
    args = {
        "trials": str(table),
        "sha256": "0" * 64,
        "seed": seed,
        "duplicates": duplicates,
        "hardware": "a100",
        "engine": "hf",
        "model": "m",
        "n_gpus": n_gpus,
        "batch_noise_cv": cv,
        "load_seconds": 42.0,
        "trial_timeout_s": 600.0,
    }
    return rh.Engine(EngineSpec("org/m", n_gpus, "float16", "cpu", args))


def run_trial(eng: rh.Engine, tokens: int, batch: int, rep: int = 0, prompts: int = PROMPTS):
    """What the worker does: the trial's batches through generate until one raises. Returns the
    batch results and the exception (None: every batch ran)."""
    sizes = [min(batch, prompts - i) for i in range(0, prompts, batch)]
    eng.begin_trial(tokens, batch, rep, sizes)
    results = []
    for size in sizes:
        try:
            results.append(eng.generate(["p"] * size, tokens))
        except Exception as exc:  # noqa: BLE001 - the test looks at what was raised
            return results, exc
    return results, None


@pytest.fixture
def table(tmp_path) -> Path:
    return write_table(tmp_path / "trials.csv")


def test_an_ok_trial_has_every_batch_and_its_times_sum_to_the_recorded_throughput(table):
    eng = engine(table)
    assert eng.load() == 42.0  # the table has no load time: the estimate
    results, failure = run_trial(eng, 5, 1)
    assert failure is None and len(results) == PROMPTS
    assert all(r.new_token_ids == [[rh.TOKEN_ID] * 5] for r in results)  # exactly max_new_tokens
    seconds = [r.simulated_seconds for r in results]
    assert len(set(seconds)) == PROMPTS  # noisy, batch to batch
    assert math.isclose(PROMPTS * 5 / sum(seconds), 10.0, rel_tol=1e-12)


def test_the_load_time_is_the_tables_where_it_has_one(tmp_path):
    path = tmp_path / "trials.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=TIDY_COLUMNS)
        writer.writeheader()
        for load in (30.0, 50.0, 40.0):
            writer.writerow(dict(zip(rh.NEEDED_COLUMNS, ROWS[0], strict=False), load_seconds=load))
    eng = engine(path)
    assert eng.load() == 40.0 and eng.effective_settings()["load_seconds_from"] == "trials table"


def test_duplicates_last_answers_repetition_0_with_the_last_row_and_replicates_by_rep(table):
    last = engine(table, duplicates="last")
    last.load()
    for rep, throughput in ((0, 40.0), (1, 20.0)):
        results, _ = run_trial(last, 5, 4, rep)
        assert math.isclose(PROMPTS * 5 / sum(r.simulated_seconds for r in results), throughput)
    _, failure = run_trial(last, 5, 4, 2)
    assert failure.status == "unsupported" and "has 2 run(s)" in str(failure)
    replicates = engine(table, duplicates="replicates")
    replicates.load()
    results, _ = run_trial(replicates, 5, 4, 0)
    assert math.isclose(PROMPTS * 5 / sum(r.simulated_seconds for r in results), 20.0)


def test_a_partial_out_of_memory_keeps_its_throughput_in_the_batches_before_it(table):
    eng = engine(table)
    eng.load()
    results, failure = run_trial(eng, 5, 8)  # 3 batches: 8, 8, 7
    assert isinstance(failure, OutOfMemory) and "records oom" in str(failure)
    assert 1 <= len(results) <= 2  # stops after the first batch, never at it
    tokens = sum(r.new_tokens for r in results)
    assert math.isclose(tokens / sum(r.simulated_seconds for r in results), 50.0, rel_tol=1e-12)
    results, failure = run_trial(eng, 5, 16)  # no throughput recorded: at the first batch
    assert results == [] and isinstance(failure, OutOfMemory)
    assert eng.classify_failure(failure) == ("oom", None)


def test_errors_timeouts_and_unsupported_are_raised_as_recorded(table):
    eng = engine(table)
    eng.load()
    _, error = run_trial(eng, 10, 1)
    assert eng.classify_failure(error) == ("error", None) and str(error).startswith("CUDA error (rehearsed:")
    assert not eng.leaves_engine_unusable(error)
    results, timeout = run_trial(eng, 10, 8)
    assert eng.classify_failure(timeout) == ("timeout", None) and eng.leaves_engine_unusable(timeout)
    # the trial's wall reaches the limit, as the supervisor would have waited
    assert math.isclose(sum(r.simulated_seconds for r in results) + timeout.simulated_seconds, 600.0)
    _, unsupported = run_trial(eng, 10, 16)
    assert eng.classify_failure(unsupported) == ("unsupported", None) and "heads not divisible" in str(unsupported)
    _, missing = run_trial(eng, 10, 2)  # a configuration the table lacks is never invented
    assert missing.status == "unsupported" and "never run there" in str(missing)


def test_a_sweep_the_table_lacks_does_not_load(table):
    with pytest.raises(rh.RehearsedFailure, match="never run there") as raised:
        engine(table, n_gpus=2).load()
    assert raised.value.status == "unsupported"


def test_the_same_seed_gives_the_same_times_and_the_noise_has_the_calibrated_spread(table):
    def times(seed, cv=0.1):
        eng = engine(table, seed=seed, cv=cv)
        eng.load()
        return [r.simulated_seconds for r in run_trial(eng, 5, 1)[0]]

    assert times(0) == times(0) and times(0) != times(1)
    assert len(set(times(0, cv=0.0))) == 1  # no noise: equal batches take equal times
    rng = rh.trial_rng(0, "spread")
    seconds = rh.batch_seconds([1] * 4000, 5, 10.0, 0.2, rng)
    assert math.isclose(statistics.pstdev(seconds) / statistics.fmean(seconds), 0.2, rel_tol=0.1)
    # a smaller last batch takes its share of the time
    sizes = [8] * 50 + [2]
    seconds = rh.batch_seconds(sizes, 5, 10.0, 0.0, rng)
    assert math.isclose(seconds[-1] * 4, seconds[0]) and math.isclose(sum(seconds), sum(sizes) * 5 / 10.0)


def test_the_table_must_be_a_trials_table(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("model,throughput\nm,1\n")
    with pytest.raises(rh.RehearsalTableError, match="lacks the columns hardware"):
        engine(bad).load()


# -- through the real worker and supervisor ------------------------------------------------------------


def rehearsal_config(tmp_path: Path, table: Path, **overrides) -> dict:
    config = {
        "models": {"m": {"hf_id": "org/m", "params_billion": 7}},
        "engines": ["hf"],
        "hardware": {"a100": {"kind": "gpu", "gpus_per_node": 8}},
        "n_gpus": [1],
        "batch_sizes": [1, 2, 4, 8, 16],
        "max_new_tokens": [5, 10],
        "analysis": {"max_new_tokens": 5},
        "paper_data": {"replay": False},
        "benchmark": {"limit": PROMPTS},
        "oom_pruning": False,
        "trial_timeout_s": 600,
        "warmup": {"batches": 1, "batch_size": 4},
        "crosscheck": {"enabled": False},
        "results_dir": str(tmp_path / "results"),
        "rehearsal": {"trials": str(table), "duplicates": "last"},
        **overrides,
    }
    return load_config(config)


def test_a_rehearsed_sweep_through_the_worker_records_what_the_table_says(tmp_path, table, benchmark_file):
    config = rehearsal_config(tmp_path, table)
    folder = tmp_path / "results/rehearsal/trials/a100/hf/m/g1"
    summary = run_sweep(config, Sweep("a100", "hf", "m", 1), folder, benchmark_file)
    assert summary["trials"] == {
        "t5/b1_r0.json": "ok",
        "t5/b2_r0.json": "unsupported",
        "t5/b4_r0.json": "ok",
        "t5/b8_r0.json": "oom",
        "t5/b16_r0.json": "oom",
        "t10/b1_r0.json": "error",
        "t10/b2_r0.json": "unsupported",
        "t10/b4_r0.json": "crashed",  # the worker died, as a real one does
        "t10/b8_r0.json": "timeout",
        "t10/b16_r0.json": "unsupported",
    }
    # a fresh worker (and load) after the error, the crash and the timeout; none after unsupported
    assert summary["model_loads"] == 4 and summary["load_seconds"] == [20 + 2 * 7] * 4
    assert summary["simulated"] and summary["harness_overhead"] is None
    record = records.read(folder / "t5/b4_r0.json")
    assert record["simulated"] and record["rehearsal"]["trials"] == str(table)
    assert record["rehearsal"]["sha256"] == rh.file_sha256(table)
    assert math.isclose(record["throughput_tokens_per_s"], 40.0, rel_tol=1e-12)  # the last of b4's runs
    assert record["counts"]["generated_tokens"] == PROMPTS * 5
    assert record["peak_memory"] == {"bytes": None, "kind": None}
    assert record["cost"] == {
        "device_seconds": record["timings"]["generation_seconds"],
        "wall_seconds": record["timings"]["generation_seconds"],
        "devices": 1,
    }
    assert record["environment"]["cuda_visible_devices"] == "" and record["energy"]["joules"] is None
    crashed = records.read(folder / "t10/b4_r0.json")
    assert "killed by signal SIGKILL after 0 batch(es)" in crashed["error"]
    timeout = records.read(folder / "t10/b8_r0.json")
    assert math.isclose(timeout["cost"]["wall_seconds"], 600.0)
    trial_walls = sum(records.read(folder / p)["cost"]["wall_seconds"] for p in summary["trials"])
    assert math.isclose(
        summary["cost"]["wall_seconds"], sum(summary["load_seconds"]) + sum(summary["warmup_seconds"]) + trial_walls
    )
    # a second run keeps every record; another seed rehearses them again
    again = run_sweep(config, Sweep("a100", "hf", "m", 1), folder, benchmark_file)
    assert again["reused_trials"] == 10 and again["model_loads"] == 0
    reseeded = rehearsal_config(tmp_path, table, rehearsal={"trials": str(table), "seed": 1})
    assert run_sweep(reseeded, Sweep("a100", "hf", "m", 1), folder, benchmark_file)["reused_trials"] == 0


def test_measured_and_simulated_records_refuse_to_mix(tmp_path, table, benchmark_file):
    config = rehearsal_config(tmp_path, table, batch_sizes=[1], max_new_tokens=[5])
    folder = tmp_path / "results/rehearsal/trials/a100/hf/m/g1"
    run_sweep(config, Sweep("a100", "hf", "m", 1), folder, benchmark_file)
    manifest = [folder / "sweep.json"]
    assert len(collect_rows(manifest, records.REHEARSAL)) == 1
    with pytest.raises(records.RecordError, match="a simulated trial .* cannot enter the measured dataset"):
        collect_rows(manifest, records.MEASURED)
    record = records.read(folder / "t5/b1_r0.json")
    measured = {**record, "simulated": False, "rehearsal": None}
    with pytest.raises(records.RecordError, match="a measured trial cannot enter the rehearsal dataset"):
        records.check_dataset(measured, records.REHEARSAL, "x.json")
    records.check_dataset(measured, records.MEASURED, "x.json")
    records.check_dataset({k: v for k, v in measured.items() if k not in ("simulated", "rehearsal")}, "measured", "v2")
    # a sweep that measures does not keep a simulated record it finds, nor a rehearsal a measured one
    context = records.SweepContext.from_config(config, Sweep("a100", "hf", "m", 1), "org/m", None, PROMPTS)
    assert records.outdated(context, record, None) == "was simulated (a rehearsal), this sweep measures"


def test_a_trial_costs_its_wall_time_times_the_gpus_its_sweep_holds(tmp_path, table):
    config = rehearsal_config(tmp_path, table, n_gpus=[1, 4])
    context = records.SweepContext.from_config(config, Sweep("a100", "hf", "m", 4), "org/m", None, 8)
    run = records.TrialRun("2026-12-04T00:00:00.000+00:00", 0, 1.0, wall_seconds=2.5)
    record = records.trial_record(context, TrialKey(5, 1, 0), "ok", run=run)
    assert record["cost"] == {"device_seconds": 10.0, "wall_seconds": 2.5, "devices": 4}
    cpu = {**config, "hardware": {"a100": {"kind": "cpu"}}}
    assert records.SweepContext.from_config(cpu, Sweep("a100", "vllm", "m", 2), "org/m", None, 8).devices == 1


# -- the config --------------------------------------------------------------------------------------


def test_a_rehearsal_needs_no_model_files_but_the_table_must_hold_the_grid(tmp_path, table):
    config = rehearsal_config(tmp_path, table, models={"m": {"path": str(tmp_path / "not-there")}})
    assert config["rehearsal"]["duplicates"] == "last"  # a model folder that is not there is no problem
    with pytest.raises(ConfigError) as raised:
        rehearsal_config(tmp_path, table, models={"mm": {"hf_id": "org/mm"}}, crosscheck={"enabled": True})
    message = str(raised.value)
    assert "config key 'models.mm': not in the trials table" in message
    assert "config key 'crosscheck.enabled'" in message and "a rehearsal runs no engine" in message
    # nothing live beside it: servers, or engine settings the table has no answer for
    with pytest.raises(ConfigError) as raised:
        rehearsal_config(
            tmp_path, table, serve={"engines": ["vllm"]}, engine_arg_axes={"vllm": {"max_num_seqs": [8, 16]}}
        )
    message = str(raised.value)
    assert "config key 'serve'" in message and "cannot stand in for a live server" in message
    assert "config key 'engine_arg_axes'" in message and "one answer per configuration" in message
    with pytest.raises(ConfigError, match="config key 'rehearsal.trials': '/nowhere.csv' cannot be read"):
        rehearsal_config(tmp_path, table, rehearsal={"trials": "/nowhere.csv"})
    with pytest.raises(ConfigError, match="a rehearsal adds to the experiment it rehearses"):
        load_config(REPO / "configs/rehearsal.yaml")


def test_the_paper_rehearsal_keeps_the_papers_grid_and_what_it_changes():
    config = load_config(REPO / "configs/paper.yaml", REPO / "configs/rehearsal.yaml")
    paper = load_config(REPO / "configs/paper.yaml")
    assert config["models"] == paper["models"] and config["hardware"] == paper["hardware"]
    assert config["rehearsal"]["trials"] == rh.PAPER and rh.duplicates(config) == "last"
    assert rh.table_path(config) == Path("results/paper/trials.csv")
    assert not config["oom_pruning"] and not config["crosscheck"]["enabled"]
    assert paper["serve"] and config["serve"] is None  # the paper's servers are not rehearsed


def test_the_batch_noise_defaults_are_the_calibrations():
    """The schema's per-engine defaults are the figures bench/batch_noise.py wrote."""
    with open(REPO / "bench/output/batch_noise.csv", newline="") as handle:
        calibrated = {row["engine"]: float(row["median_cv"]) for row in csv.DictReader(handle)}
    config = load_config(REPO / "configs/paper.yaml", REPO / "configs/rehearsal.yaml")
    assert config["rehearsal"]["batch_noise_cv"] == {e: round(calibrated[e], 3) for e in ("hf", "vllm")}


def test_the_paper_rehearsal_plans_the_papers_jobs_without_a_gpu(tmp_path):
    """The rehearsal's plan is the paper's (the same sweep jobs, split alike under the paper's
    partitions), each job asking for no GPU, without a download."""

    def dry_run(*configs):
        done = snakemake(
            "-n",
            "--profile",
            str(REPO / "profiles/slurm"),
            "--configfile",
            *(str(REPO / c) for c in configs),
            "--directory",
            str(tmp_path),
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return done

    paper = dry_run("configs/paper.yaml")
    done = dry_run("configs/paper.yaml", "configs/rehearsal.yaml")
    counts = job_counts(done.stdout)
    assert counts["sweep"] == job_counts(paper.stdout)["sweep"] == 285 + 35 * 3 and counts["optimise_tune"] == 1
    assert "download_model" not in counts and "crosscheck" not in counts and "build_model" not in counts
    jobs = sorted(re.findall(r"output: results/trials/(\S+/sweep\S*\.json)", paper.stdout))
    assert sorted(re.findall(r"output: results/rehearsal/trials/(\S+/sweep\S*\.json)", done.stdout)) == jobs
    assert "a100/hf/Codellama-70b-hf/g8/sweep_t10.json" in jobs
    sweeps = done.stdout.split("rule sweep:")[1:]
    assert all("resources: tmpdir=/tmp, gpu=0, runtime=30, mem_mb=2048" in s for s in sweeps)
    inputs = "input: resources/data/humaneval_single_line_infilling.jsonl.gz, results/paper/trials.csv"
    assert all(inputs in s for s in sweeps)
    assert "InfPop rehearsal: every trial answered from results/paper/trials.csv" in done.stderr
    assert "results/rehearsal/rq3/anova.csv" in done.stdout and "results/measured" not in done.stdout
    assert "results/rehearsal/report.html" in done.stdout and "results/rehearsal/cost.csv" in done.stdout


# -- the same trials through two paths ------------------------------------------------------------


def test_two_paths_finds_a_difference_and_ignores_how_duplicates_were_resolved():
    import pandas as pd

    from infpop.analysis.two_paths import compare_documents, compare_tables

    replay = pd.DataFrame({"model": ["a", "b"], "F": [1.5, math.nan], "n": [3, 4], "analysis_duplicates": "last"})
    rehearsal = replay.assign(analysis_duplicates="replicates", F=[1.5 * (1 + 1e-12), math.nan])
    assert compare_tables(replay, rehearsal) == []  # rounding in the last bits, NaN where NaN
    assert compare_tables(replay, rehearsal.assign(n=[3, 5])) == ["row 2, n: 4.0 against 5.0"]
    assert compare_tables(replay, rehearsal.assign(F=[1.6, math.nan])) == ["row 1, F: 1.5 against 1.6"]
    assert compare_tables(replay, rehearsal.iloc[:1]) == ["2 rows against 1"]
    assert compare_documents([{"x": {"y": [1, 2.0]}}], [{"x": {"y": [1, 2.5]}}]) == ["[0].x.y[1]: 2.0 against 2.5"]


APPENDIX = REPO.parent / "shared" / "data" / "infpop-appendix"
#: The slice: a small model, one with crashes and errors in its sweeps, one offloaded on V100s.
SLICE_MODELS = ["Bloom-1b7", "Wizardcoder-33b", "Codellama-70b-hf"]


@pytest.mark.slow
@needs_shared(APPENDIX)
def test_a_slice_of_the_paper_rehearsal_through_snakemake_agrees_with_the_replay(tmp_path):
    """Three of the paper's models, both engines, both GPU generations, every GPU count, batch size
    and max_new_tokens, through the workflow (planning and splitting against profiles/slurm's
    partitions, the sweeps as jobs, aggregation, RQ1-RQ5): the rehearsal's analyses (the measured
    path) must equal the replay's of the same trials. The replay reads the import's table; here
    that table is the paper's trials of the three models, put where the import writes it, so that
    both paths analyse the same rows (the import, which would write all 20 models, does not run:
    its outputs are there)."""
    from infpop.analysis.two_paths import compare, describe
    from infpop.data.paper import fetch_appendix, import_paper, write_trials

    results = tmp_path / "results"
    trials = import_paper(fetch_appendix(results / "paper/appendix", APPENDIX))
    write_trials(trials[trials["model"].isin(SLICE_MODELS)], results / "paper/trials.csv")
    config = yaml.safe_load((REPO / "configs/paper.yaml").read_text())
    config.update(yaml.safe_load((REPO / "configs/rehearsal.yaml").read_text()))
    config["models"] = {key: config["models"][key] for key in SLICE_MODELS}
    config["paper_data"] = {"local_dir": str(APPENDIX)}
    config["optimise"] = {"rq5": {"repeats": 2}, "study": {"seeds": 2}}
    path = tmp_path / "slice.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    targets = ["measure", "rq1", "rq2", "rq3", "rq4", "rq5"]
    targets += [f"results/{d}/discussion/correlations.csv" for d in ("rehearsal", "paper")]
    done = snakemake("--cores", "2", "--configfile", str(path), "--directory", str(tmp_path), *targets)
    assert done.returncode == 0, (done.stdout + done.stderr)[-5000:]
    assert "rule import_paper:" not in done.stdout + done.stderr

    own = results / "rehearsal"
    # a sweep the plan splits (estimated past its partition's 24 h) is one job per max_new_tokens
    assert sorted(p.name for p in (own / "trials/a100/hf/Codellama-70b-hf/g1").glob("sweep*.json")) == [
        "sweep_t10.json",
        "sweep_t20.json",
        "sweep_t5.json",
    ]
    with open(own / "trials.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(SLICE_MODELS) * 2 * 2 * 4 * 11 * 3  # every trial of the plan
    statuses = {r["status"] for r in rows}
    assert {"ok", "oom", "crashed", "error", "unsupported"} <= statuses
    assert all(json.loads((tmp_path / r["path"]).read_text())["simulated"] for r in rows[:50])
    manifest = json.loads((own / "trials/v100/vllm/Bloom-1b7/g2/sweep.json").read_text())
    assert manifest["simulated"] and manifest["cost"]["devices"] == 2
    assert math.isclose(manifest["cost"]["device_seconds"], 2 * manifest["cost"]["wall_seconds"])

    found = compare(own, results / "paper", ["a100", "v100"])
    assert not any(found.values()), describe(found)
    assert len(found) == 13 + len(SLICE_MODELS)  # every table (two Table IIs), every model's RQ5


def test_the_noise_calibration_finds_a_known_spread_around_a_trend(tmp_path):
    """bench/batch_noise.py on synthetic records: batch times on a quadratic trend with 10% noise
    and two contention spikes (10x) a trial, a smaller last batch (left out), and records it must
    skip (too few batches, not ok, simulated). The robust spread finds the 10%; the plain one
    counts the spikes too."""
    import random
    import runpy

    calibrate = runpy.run_path(str(REPO / "bench/batch_noise.py"), run_name="bench")["calibrate"]
    rng = random.Random(0)
    for trial in range(40):
        batches = 50
        trend = [1.0 + 0.02 * i + 0.001 * i * i for i in range(batches)]
        latencies = [t * (1 + 0.1 * rng.gauss(0, 1)) for t in trend] + [0.01]  # the last batch is smaller
        latencies[10] *= 10
        latencies[30] *= 10
        record = {
            "engine": "hf",
            "status": "ok",
            "batch_size": 4,
            "counts": {"prompts": 4 * batches + 1},
            "timings": {"batch_latencies_s": latencies},
        }
        folder = tmp_path / "cpu/hf/m/g1/t5"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"b4_r{trial}.json").write_text(json.dumps(record))
    skipped = [{"status": "oom"}, {"timings": {"batch_latencies_s": [1.0] * 3}}, {"simulated": True}]
    for i, change in enumerate(skipped):
        (folder / f"b8_r{i}.json").write_text(json.dumps({**record, **change}))
    [row] = calibrate([tmp_path])
    assert row["engine"] == "hf" and row["trials"] == 40 and row["batches"] == 40 * 50
    assert math.isclose(row["median_cv"], 0.1, rel_tol=0.15) and row["median_plain_cv"] > 0.5
