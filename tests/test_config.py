"""Config validation: defaults filled, and every bad config stopped with the key (and file:line)."""

from __future__ import annotations

import pytest
import yaml
from conftest import REPO, make_config

from infpop.config import ConfigError, load_config
from infpop.measure.device_check import conda_env_name
from infpop.measure.grid import plan_rows


def test_defaults_are_filled(tiny_model):
    config = load_config(make_config(tiny_model))
    assert config["repetitions"] == 1
    assert config["benchmark"] == {
        "name": "humaneval_single_line_infilling",
        "order": "length_ascending",
        "seed": 0,
        "limit": 8,
    }
    assert config["warmup"] == {"batches": 1, "batch_size": 8}
    assert config["oom_pruning"] is True and config["retry_failed"] is False
    assert config["n_gpus"] == {"hf": [1]}  # a list applies to every engine
    assert config["models"]["tiny"]["params_billion"] is None


def test_input_is_not_modified(tiny_model):
    raw = make_config(tiny_model)
    load_config(raw)
    assert "repetitions" not in raw


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ({"colour": "blue"}, "unknown key 'colour' at the top level"),
        ({"benchmark": {"limit": 8, "ordr": "random"}}, "unknown key 'ordr' under 'benchmark'"),
        ({"batch_sizes": [1, 0]}, "config key 'batch_sizes[1]': 0 is less than the minimum of 1"),
        ({"batch_sizes": []}, "config key 'batch_sizes'"),
        ({"batch_sizes": "64"}, "config key 'batch_sizes': '64' is not a list"),
        ({"engines": ["hf", "tgi"]}, "config key 'engines[1]': 'tgi' is not one of ['hf', 'vllm']"),
        ({"engines": []}, "config key 'engines'"),
        ({"repetitions": 1.5}, "config key 'repetitions': 1.5 is not an integer"),
        ({"dtype": "fp8"}, "config key 'dtype'"),
        ({"benchmark": {"order": "shortest_first"}}, "config key 'benchmark.order'"),
        ({"benchmark": {"limit": 0}}, "config key 'benchmark.limit': 0 is less than the minimum of 1"),
        (
            {"hardware": {"a100": {"kind": "gpu"}}},
            "config key 'hardware.a100.gpus_per_node': is required but not given",
        ),
        ({"hardware": {"tpu": {"kind": "tpu"}}}, "config key 'hardware.tpu.kind'"),
        (
            {"hardware": {"v100": {"kind": "gpu", "gpus_per_node": 8, "environment": "pascal"}}},
            "config key 'hardware.v100.environment': 'pascal' is not one of ['volta']",
        ),
        (
            {"hardware": {"cpu": {"kind": "cpu", "environment": "volta"}}},
            "config key 'hardware.cpu.environment': 'volta' picks GPU builds; a 'cpu' hardware runs in the standard",
        ),
        ({"n_gpus": {"hf": [1], "sglang": [1]}}, "config key 'n_gpus'"),
        ({"trial_timeout_s": 0}, "config key 'trial_timeout_s'"),
        ({"max_new_tokens": [-5]}, "config key 'max_new_tokens[0]'"),
        (
            {"runtime_estimate": {"hf": {"trial_s": 0}}},
            "config key 'runtime_estimate.hf.trial_s': 0 is less than or equal to the minimum of 0",
        ),
        (
            {"runtime_estimate": {"safety_factor": 0.5}},
            "config key 'runtime_estimate.safety_factor': 0.5 is less than the minimum of 1",
        ),
        ({"runtime_estimate": {"sglang": {"trial_s": 5}}}, "unknown key 'sglang' under 'runtime_estimate'"),
        ({"runtime_estimate": {"vllm": {"trial": 5}}}, "unknown key 'trial' under 'runtime_estimate.vllm'"),
    ],
)
def test_bad_values_name_the_key(tiny_model, overrides, expected):
    with pytest.raises(ConfigError) as caught:
        load_config(make_config(tiny_model, **overrides))
    assert expected in str(caught.value)


def test_a_hardware_names_its_environment(tiny_model):
    """Sweeps and live tuning on a hardware with `environment: volta` run in the volta builds."""
    gpus = {
        "a100": {"kind": "gpu", "gpus_per_node": 8},
        "v100": {"kind": "gpu", "gpus_per_node": 8, "environment": "volta"},
    }
    config = load_config(make_config(tiny_model, hardware=gpus))
    names = {
        (label, role): conda_env_name(config["hardware"][label], role)
        for label in gpus
        for role in ("hf", "vllm", "tune")
    }
    assert names == {
        ("a100", "hf"): "hf",
        ("a100", "vllm"): "vllm",
        ("a100", "tune"): "tune",
        ("v100", "hf"): "hf-volta",
        ("v100", "vllm"): "vllm-volta",
        ("v100", "tune"): "tune-volta",
    }
    assert all((REPO / "envs" / f"{name}.yaml").is_file() for name in names.values())
    paper = load_config(REPO / "configs/paper.yaml")
    assert paper["hardware"]["v100"]["environment"] == "volta" and "environment" not in paper["hardware"]["a100"]


def test_missing_model_directory_names_the_path(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(ConfigError) as caught:
        load_config(make_config(missing))
    assert "config key 'models.tiny.path': model directory does not exist" in str(caught.value)
    assert str(missing) in str(caught.value)


def test_model_needs_exactly_one_source(tiny_model):
    config = make_config(tiny_model)
    config["models"]["tiny"]["hf_id"] = "org/model"
    with pytest.raises(ConfigError, match="model 'tiny' needs exactly one source"):
        load_config(config)
    with pytest.raises(ConfigError, match="model 'x' needs exactly one source"):
        load_config(make_config(tiny_model, models={"x": {"params_billion": 1}}))


def test_hub_model_revision_and_models_dir(tiny_model, tmp_path):
    config = load_config(make_config(tiny_model, models={"m": {"hf_id": "org/model", "revision": "v1.0"}}))
    assert config["models_dir"] == "resources/hub" and config["models"]["m"]["revision"] == "v1.0"
    with pytest.raises(ConfigError, match="config key 'models.tiny.revision': a revision applies to hf_id models only"):
        load_config(make_config(tiny_model, models={"tiny": {"path": str(tiny_model), "revision": "main"}}))
    a_file = tmp_path / "hub"
    a_file.write_text("")
    with pytest.raises(ConfigError, match=f"config key 'models_dir': '{a_file}' exists and is not a directory"):
        load_config(make_config(tiny_model, models_dir=str(a_file)))


def test_built_model_must_live_where_the_rule_builds_it(tiny_model):
    models = {"tiny-llama": {"path": "elsewhere/tiny", "build": "tiny"}}
    with pytest.raises(ConfigError, match="built into 'resources/models/tiny-llama'"):
        load_config(make_config(tiny_model, models=models))


def test_required_keys(tiny_model):
    config = make_config(tiny_model)
    del config["engines"]
    with pytest.raises(ConfigError, match="config key 'engines': is required but not given"):
        load_config(config)


def test_empty_grid_is_refused(tiny_model):
    # hf runs on one device on the CPU: asking only for 2 leaves nothing to run
    with pytest.raises(ConfigError, match="the trial grid is empty.*hf runs on one device"):
        load_config(make_config(tiny_model, n_gpus=[2]))
    gpu = {"v100": {"kind": "gpu", "gpus_per_node": 4}}
    with pytest.raises(
        ConfigError,
        match=r"config key 'n_gpus\[0\]': 8 devices, more than a node of any hardware of the config has "
        r"\(devices per node: 'v100' 4",
    ):
        load_config(make_config(tiny_model, hardware=gpu, n_gpus=[8]))


def _with_heads(tiny_model, folder, heads):
    """A copy of the tiny model's folder whose config says `heads` attention heads (the weights are
    not read at planning time)."""
    import json
    import shutil

    shutil.copytree(tiny_model, folder)
    settings = json.loads((folder / "config.json").read_text())
    settings.update(num_attention_heads=heads, num_key_value_heads=heads)
    (folder / "config.json").write_text(json.dumps(settings))
    return folder


def test_a_tensor_parallel_size_the_heads_do_not_divide_is_left_out_of_the_plan(tiny_model, tmp_path):
    six = _with_heads(tiny_model, tmp_path / "six-heads", 6)
    gpu = {"a100": {"kind": "gpu", "gpus_per_node": 8}}
    config = load_config(make_config(six, engines=["hf", "vllm"], hardware=gpu, n_gpus=[1, 2, 3, 4, 8]))
    rows = {(r["engine"], r["n_gpus"]): r for r in plan_rows(config)}
    for n_gpus in (4, 8):
        assert rows[("vllm", n_gpus)]["planned"] == "excluded"
        assert (
            rows[("vllm", n_gpus)]["reason"] == f"6 attention heads are not divisible by {n_gpus} tensor-parallel ranks"
        )
    assert all(rows[("vllm", n)]["planned"] == "run" for n in (1, 2, 3))
    # hf's device_map splits whole layers: any GPU count takes the model
    assert all(rows[("hf", n)]["planned"] == "run" for n in (1, 2, 3, 4, 8))
    # live tuning searches only the GPU counts the plan keeps
    from infpop.optimise.tune import tune_space

    assert tune_space(config, "vllm").n_gpus == (1, 2, 3)


def test_a_hub_model_not_downloaded_yet_is_planned_whole(tiny_model, tmp_path):
    """At planning time a hub model's config may not be on disk: nothing is left out (the run then
    records vLLM's refusal as `unsupported`); once downloaded, its config.json is read."""
    import json

    gpu = {"a100": {"kind": "gpu", "gpus_per_node": 8}}
    spec = {"models": {"sc2": {"hf_id": "bigcode/starcoder2-7b"}}, "models_dir": str(tmp_path / "hub")}
    config = load_config(make_config(tiny_model, engines=["vllm"], hardware=gpu, n_gpus=[4, 8], **spec))
    assert [r["planned"] for r in plan_rows(config)] == ["run", "run"]
    snapshot = _with_heads(tiny_model, tmp_path / "hub" / "snapshot", 36)  # StarCoder2-7b has 36 heads
    files = [{"path": "config.json", "bytes": (snapshot / "config.json").stat().st_size}]
    (tmp_path / "hub" / "sc2.json").write_text(
        json.dumps(
            {
                "repo_id": "bigcode/starcoder2-7b",
                "revision": "main",
                "commit": "0" * 40,
                "snapshot": "snapshot",
                "files": files,
            }
        )
    )
    rows = plan_rows(config)
    assert [(r["n_gpus"], r["planned"], r["reason"]) for r in rows] == [
        (4, "run", ""),
        (8, "excluded", "36 attention heads are not divisible by 8 tensor-parallel ranks"),
    ]


def test_n_gpus_for_an_engine_not_measured(tiny_model):
    with pytest.raises(ConfigError, match="engine 'vllm' is not in 'engines'"):
        load_config(make_config(tiny_model, n_gpus={"hf": [1], "vllm": [1]}))


def test_all_problems_reported_together(tiny_model):
    with pytest.raises(ConfigError) as caught:
        load_config(make_config(tiny_model, batch_sizes=[0], dtype="fp8", colour=1))
    message = str(caught.value)
    assert "batch_sizes[0]" in message and "dtype" in message and "colour" in message


def test_yaml_errors_give_file_and_line(tmp_path, tiny_model):
    path = tmp_path / "bad.yaml"
    config = make_config(tiny_model)
    config["batch_sizes"] = [1, 0]
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if text.strip() == "- 0")
    with pytest.raises(ConfigError, match=rf"{path}:{line}: config key 'batch_sizes\[1\]'"):
        load_config(path)


def test_unreadable_yaml(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("models: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "absent.yaml")


def test_default_config_is_valid():
    config = load_config(REPO / "config.yaml")
    rows = plan_rows(config)
    run = [(r["engine"], r["n_gpus"]) for r in rows if r["planned"] == "run"]
    assert run == [("hf", 1), ("vllm", 1), ("vllm", 2)]
    excluded = [r for r in rows if r["planned"] == "excluded"]
    assert [(r["engine"], r["n_gpus"]) for r in excluded] == [("hf", 2)]
    assert config["batch_sizes"] == [1, 2, 4, 8, 16, 32, 64] and config["max_new_tokens"] == [5]


def test_paper_config_is_the_papers_grid():
    config = load_config(REPO / "configs" / "paper.yaml")
    rows = plan_rows(config)
    assert sum(r["planned"] == "run" for r in rows) == 320
    assert sum(r["n_trials"] for r in rows) == 10_560
    assert len(config["models"]) == 20 and config["dtype"] == "float16"
    assert config["benchmark"]["order"] == "length_ascending"
    # vLLM as the paper's script built it: 85% of GPU memory, no prefix caching (vLLM 0.32 has it on)
    assert config["engine_args"]["vllm"] == {"gpu_memory_utilization": 0.85, "enable_prefix_caching": False}
    assert all(
        "hf_id" in spec and spec["params_billion"] and spec["humaneval_pass1"] for spec in config["models"].values()
    )


def test_analysis_tokens_must_be_measured_and_in_the_paper_data(tiny_model):
    with pytest.raises(ConfigError, match="config key 'analysis.max_new_tokens': 10 is not one of the measured"):
        load_config(make_config(tiny_model, analysis={"max_new_tokens": 10}))
    with pytest.raises(ConfigError, match="the paper replay has trials at max_new_tokens"):
        load_config(make_config(tiny_model, max_new_tokens=[3], analysis={"max_new_tokens": 3}, paper_data={}))
    config = load_config(
        make_config(tiny_model, max_new_tokens=[3], analysis={"max_new_tokens": 3}, paper_data={"replay": False})
    )
    assert config["analysis"] == {
        "max_new_tokens": 3,
        "include_partial_oom": True,
        "duplicates": "replicates",
        "engine_settings": {"hf": "default"},  # the only settings without engine_arg_axes
    }


@pytest.mark.parametrize(
    "optimisation, expected",
    [
        ({"tune": {"budget": 0}}, "config key 'optimise.tune.budget': 0 is less than the minimum of 1"),
        ({"tune": {"batch_sizes": []}}, "config key 'optimise.tune.batch_sizes': [] should be non-empty"),
        ({"tune": {"n_gpus": [2]}}, "config key 'optimise.tune.n_gpus': empty search space for hf on 'cpu'"),
        ({"tune": {"optimiser": "smac"}}, "config key 'optimise.tune.optimiser': 'smac' is not one of"),
        ({"tune": {"hardware": "a100"}}, "config key 'optimise.tune.hardware': 'a100' is not a hardware"),
        (
            {"tune": {"engines": ["vllm"]}},
            "config key 'optimise.tune.engines': 'vllm' is not an engine of the config (hf)",
        ),
        (
            {"tune": {"objective": "latency_constrained"}},
            "config key 'optimise.tune.latency_p95_limit_s' (not set): the latency_constrained objective needs a limit",
        ),
        ({"tune": {"prior_hardware": "cpu"}}, "config key 'optimise.tune.prior_hardware': 'cpu' must be another"),
        ({"rq5": {"evaluations": 0}}, "config key 'optimise.rq5.evaluations': 0 is less than the minimum of 1"),
        ({"study": {"optimisers": []}}, "config key 'optimise.study.optimisers'"),
    ],
)
def test_bad_optimisation_settings_name_the_key(tiny_model, optimisation, expected):
    with pytest.raises(ConfigError) as caught:
        load_config(make_config(tiny_model, optimise=optimisation))
    assert expected in str(caught.value)


def test_latency_objective_on_the_paper_data_is_refused(tiny_model):
    """The paper's published trials have no latency: refused before any work, naming the key."""
    optimisation = {"objective": "latency_constrained", "latency_p95_limit_s": 0.5}
    with pytest.raises(ConfigError) as caught:
        load_config(
            make_config(
                tiny_model,
                optimise=optimisation,
                paper_data={"replay": True},
                analysis={"max_new_tokens": 5},
                max_new_tokens=[5],
            )
        )
    assert "config key 'optimise.objective': the paper's published trials have no latency" in str(caught.value)
    config = load_config(make_config(tiny_model, optimise=optimisation))  # our own trials have latency
    assert config["optimise"]["objective"] == "latency_constrained"


def test_tuning_defaults_follow_the_config(tiny_model):
    tune = load_config(make_config(tiny_model, engines=["hf", "vllm"]))["optimise"]["tune"]
    assert tune == {
        "hardware": "cpu",
        "model": "tiny",
        "engines": ["hf", "vllm"],
        "n_gpus": None,
        "batch_sizes": [1, 4],
        "max_new_tokens": 3,
        "optimiser": "landscape_ei",
        "budget": 6,
        "seed": 0,
        "objective": "throughput",
        "latency_p95_limit_s": None,
        "prior_hardware": None,
    }


def test_a_renamed_key_says_what_it_is_called_now(tiny_model):
    with pytest.raises(ConfigError, match="config key 'optimisation': renamed to 'optimise'"):
        load_config(make_config(tiny_model, optimisation={"tune": {"budget": 2}}))
