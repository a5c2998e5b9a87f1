"""Engine arguments as grid axes, offline (one sweep per combination) and for the servers: one
expansion (grid.engine_settings), the combinations the engine refuses left out with the reason, each
sweep's folder and engine arguments, and the analyses' choice of one setting."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from conftest import VLLM_TEST_ARGS, make_config

from infpop.analysis.selection import AnalysisSettings, select
from infpop.config import ConfigError, load_config
from infpop.measure.engines import load_engine_class
from infpop.measure.grid import (
    DEFAULT_SETTINGS,
    Sweep,
    engine_settings,
    plan,
    plan_rows,
    settings_label,
    sweep_engine_args,
)


@pytest.fixture
def model_folder(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"num_attention_heads": 4, "max_position_embeddings": 512}))
    return folder


def test_every_combination_in_order_with_the_fixed_arguments():
    runnable, refused = engine_settings(
        "vllm", {"gpu_memory_utilization": 0.15}, {"max_num_seqs": [8, 64], "enable_chunked_prefill": [True, False]}
    )
    assert [s.label for s in runnable] == [
        "max_num_seqs=8,enable_chunked_prefill=true",
        "max_num_seqs=8,enable_chunked_prefill=false",
        "max_num_seqs=64,enable_chunked_prefill=true",
        "max_num_seqs=64,enable_chunked_prefill=false",
    ]
    assert runnable[1].arguments == {"gpu_memory_utilization": 0.15, "max_num_seqs": 8, "enable_chunked_prefill": False}
    assert refused == []
    assert engine_settings("hf", {"attn_implementation": "sdpa"}, {})[0][0].label == DEFAULT_SETTINGS
    assert settings_label({"attn_implementation": "paged|eager", "x": None}) == "attn_implementation=paged-eager,x=null"


@pytest.mark.parametrize(
    "arguments, config, reason",
    [
        ({"max_num_seqs": 64, "max_num_batched_tokens": 32}, None, "must be >= max_num_seqs (64)"),
        (
            {"max_num_batched_tokens": 256, "enable_chunked_prefill": False},
            {"max_position_embeddings": 512},
            "below max_model_len (512)",
        ),
        ({"max_num_batched_tokens": 256, "enable_chunked_prefill": False, "max_model_len": 128}, None, None),
        ({"max_num_batched_tokens": 256, "enable_chunked_prefill": True}, {"max_position_embeddings": 512}, None),
        ({"max_num_seqs": 4, "max_num_active_seqs": 8}, None, "cannot be greater than max_num_seqs (4)"),
        ({"max_num_seqs": 64}, None, None),  # the other side is vLLM's default: its to refuse at start
    ],
)
def test_vllms_rules_between_arguments(arguments, config, reason):
    found = load_engine_class("vllm").refused_combination(arguments, config)
    assert (found is None) if reason is None else (reason in found)
    assert load_engine_class("hf").refused_combination(arguments, config) is None


def test_offline_sweeps_one_per_combination_with_their_folders_and_arguments(model_folder):
    axes = {"vllm": {"max_num_seqs": [8, 64], "max_num_batched_tokens": [32, 1024]}}
    config = load_config(make_config(model_folder, engines=["hf", "vllm"], engine_arg_axes=axes))
    sweeps, excluded = plan(config)
    vllm = [s for s in sweeps if s.engine == "vllm"]
    assert [s.settings for s in vllm] == [
        "max_num_seqs=8,max_num_batched_tokens=32",
        "max_num_seqs=8,max_num_batched_tokens=1024",
        "max_num_seqs=64,max_num_batched_tokens=1024",
    ]
    assert [row["settings"] for row in excluded] == ["max_num_seqs=64,max_num_batched_tokens=32"]
    assert vllm[0].relpath == "cpu/vllm/tiny/g1/max_num_seqs=8,max_num_batched_tokens=32"
    assert Sweep("cpu", "hf", "tiny", 1).relpath == "cpu/hf/tiny/g1"  # the default keeps its folder
    assert sweep_engine_args(config, vllm[2]) == {
        **VLLM_TEST_ARGS,  # the config's engine_args.vllm
        "enable_prefix_caching": False,
        "max_num_seqs": 64,
        "max_num_batched_tokens": 1024,
    }
    rows = plan_rows(config)
    assert {r["planned"] for r in rows if r["engine"] == "vllm"} == {"run", "excluded"}
    assert config["analysis"]["engine_settings"] == {
        "hf": "default",
        "vllm": "max_num_seqs=8,max_num_batched_tokens=32",
    }


def test_the_analyses_use_the_chosen_settings_of_each_engine():
    trials = pd.DataFrame(
        {
            "hardware": "cpu",
            "engine": ["hf", "vllm", "vllm"],
            "model": "m",
            "n_gpus": 1,
            "max_new_tokens": 5,
            "batch_size": 1,
            "rep": 0,
            "status": "ok",
            "throughput_tokens_per_s": [1.0, 2.0, 3.0],
            "settings": [None, "a=1", "a=2"],
        }
    )
    chosen = select(trials, AnalysisSettings(engine_settings={"vllm": "a=2"}))
    assert list(chosen["throughput_tokens_per_s"]) == [1.0, 3.0]
    assert AnalysisSettings(engine_settings={"vllm": "a=2"}).describe()["engine_settings"] == "vllm: a=2"
    assert "engine_settings" not in AnalysisSettings().describe()


def test_bad_axes_and_choices_name_the_key(model_folder):
    with pytest.raises(ConfigError, match=r"'engine_arg_axes.vllm.max_num_seqs\[1\]': 0 is less than the minimum"):
        load_config(make_config(model_folder, engines=["vllm"], engine_arg_axes={"vllm": {"max_num_seqs": [1, 0]}}))
    with pytest.raises(ConfigError, match="'analysis.engine_settings.hf': 'x' is not one of hf's engine settings"):
        load_config(make_config(model_folder, analysis={"max_new_tokens": 3, "engine_settings": {"hf": "x"}}))
