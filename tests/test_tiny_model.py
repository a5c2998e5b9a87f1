"""Tests for infpop.data.tiny_model: a deterministic, offline tiny Llama + BPE tokenizer."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from infpop import REPO_ROOT
from infpop.data.model_folder import count_parameters
from infpop.data.tiny_model import build_tiny_model, main

TEXTS = [
    'def add(a: int, b: int) -> int:\n    """Return the sum of a and b."""\n    return a + b\n',
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "from typing import List\n\n\ndef evens(xs: List[int]) -> List[int]:\n    return [x for x in xs if x % 2 == 0]\n",
    "class Stack:\n    def __init__(self):\n        self.items = []\n\n"
    "    def push(self, item):\n        self.items.append(item)\n",
    'def is_palindrome(s: str) -> bool:\n    """>>> is_palindrome("aba")\n    True\n    """\n    return s == s[::-1]\n',
]

SNIPPET = (
    "def  weird(x,\ty):\n"
    "    # tabs, double  spaces, unicode \u00e9\u2713 and an unseen byte \u00ff\n"
    "    return {'k': [x ** 2, y // 3]}  \n\n"
)


def file_hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny-llama", TEXTS, seed=0)


def test_build_is_byte_identical(model_dir, tmp_path):
    again = build_tiny_model(tmp_path / "a" / "tiny-llama", TEXTS, seed=0)
    assert again == tmp_path / "a" / "tiny-llama"
    hashes = file_hashes(model_dir)
    assert {
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    } <= set(hashes)
    assert file_hashes(again) == hashes
    # No temporary folders are left beside the output.
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["tiny-llama"]


def test_build_is_byte_identical_across_processes(model_dir, tmp_path):
    # Hash seeds (Python's and the Rust trainer's) differ per process.
    out = tmp_path / "tiny-llama"
    code = (
        "import sys, json; from pathlib import Path\n"
        "from infpop.data.tiny_model import build_tiny_model\n"
        "build_tiny_model(Path(sys.argv[1]), json.loads(sys.argv[2]), seed=0)\n"
    )
    env = dict(
        os.environ,
        PYTHONHASHSEED="random",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    )
    subprocess.run([sys.executable, "-c", code, str(out), json.dumps(TEXTS)], check=True, env=env, capture_output=True)
    assert file_hashes(out) == file_hashes(model_dir)


def test_rebuild_replaces_existing_folder(tmp_path):
    out = tmp_path / "tiny-llama"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    build_tiny_model(out, TEXTS, seed=0)
    assert not (out / "stale.txt").exists()
    assert (out / "model.safetensors").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["tiny-llama"]


def test_different_seed_gives_different_weights(model_dir, tmp_path):
    from safetensors.torch import load_file

    other = build_tiny_model(tmp_path / "tiny-llama", TEXTS, seed=1)
    a = load_file(model_dir / "model.safetensors")
    b = load_file(other / "model.safetensors")
    assert a.keys() == b.keys()
    # Random matrices differ (norm weights are all ones in both, so check the rest).
    random_keys = [k for k in a if a[k].ndim == 2]
    assert random_keys
    assert all(not (a[k] == b[k]).all() for k in random_keys)
    # The tokenizer does not depend on the seed.
    assert (model_dir / "tokenizer.json").read_bytes() == (other / "tokenizer.json").read_bytes()


def test_config_matches_tokenizer(model_dir):
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig

    tok = AutoTokenizer.from_pretrained(model_dir)
    cfg = AutoConfig.from_pretrained(model_dir)
    gen = GenerationConfig.from_pretrained(model_dir)
    assert cfg.model_type == "llama"
    assert cfg.vocab_size == len(tok)
    assert cfg.tie_word_embeddings is False
    assert (tok.bos_token, tok.eos_token, tok.pad_token, tok.unk_token) == ("<s>", "</s>", "<pad>", "<unk>")
    for c in (cfg, gen):
        assert (c.bos_token_id, c.eos_token_id, c.pad_token_id) == (
            tok.bos_token_id,
            tok.eos_token_id,
            tok.pad_token_id,
        )
    assert len({tok.bos_token_id, tok.eos_token_id, tok.pad_token_id, tok.unk_token_id}) == 4
    assert tok.padding_side == "left"
    assert tok.model_max_length == cfg.max_position_embeddings == 2048
    assert 50_000 < count_parameters(model_dir) < 2_000_000


def test_tokenizer_round_trips_code(model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    for text in [SNIPPET, *TEXTS]:
        ids = tok.encode(text, add_special_tokens=False)
        assert tok.unk_token_id not in ids
        assert tok.decode(ids) == text
        with_bos = tok(text)["input_ids"]
        assert with_bos[0] == tok.bos_token_id and with_bos[1:] == ids
        assert tok.decode(with_bos, skip_special_tokens=True) == text
    # BPE merges were learnt: common code compresses below one token per byte.
    assert len(tok.encode(TEXTS[1], add_special_tokens=False)) < len(TEXTS[1].encode()) / 2


def test_loads_and_generates_left_padded_batch(model_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.dtype == torch.float32

    prompts = ["def add(a, b):", "from typing import List\n\ndef evens(xs: List[int]):\n    return"]
    batch = tok(prompts, return_tensors="pt", padding=True)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    lengths = mask.sum(dim=1)
    assert lengths[0] < lengths[1]
    # Left padding: the shorter row starts with pad tokens, and every row ends in real tokens.
    assert ids[0, 0].item() == tok.pad_token_id and mask[0, 0].item() == 0
    assert mask[:, -1].tolist() == [1, 1]

    with torch.no_grad():
        out = model.generate(**batch, do_sample=False, min_new_tokens=5, max_new_tokens=5)
    assert out.shape == (2, ids.shape[1] + 5)
    assert torch.equal(out[:, : ids.shape[1]], ids)
    new = out[:, ids.shape[1] :]
    assert (new != tok.pad_token_id).all()

    # Greedy decoding is deterministic.
    with torch.no_grad():
        again = model.generate(**batch, do_sample=False, min_new_tokens=5, max_new_tokens=5)
    assert torch.equal(out, again)


def test_cli_reads_gzipped_jsonl(tmp_path, capsys):
    bench = tmp_path / "bench.jsonl.gz"
    with gzip.open(bench, "wt", encoding="utf-8") as fh:
        for i, text in enumerate(TEXTS):
            head, _, body = text.partition("\n")
            fh.write(
                json.dumps(
                    {
                        "task_id": f"T/{i}",
                        "prompt": head + "\n",
                        "canonical_solution": body,
                        "test": "",
                        "entry_point": "f",
                    }
                )
            )
            fh.write("\n")
    out = tmp_path / "models" / "tiny-llama"
    assert main(["--out", str(out), "--benchmark", str(bench)]) == 0
    assert (out / "model.safetensors").exists()
    assert "parameters" in capsys.readouterr().err
    # prompt + canonical_solution rebuilds TEXTS exactly, so the tokenizer matches.
    reference = build_tiny_model(tmp_path / "ref", TEXTS)
    assert (out / "tokenizer.json").read_bytes() == (reference / "tokenizer.json").read_bytes()
