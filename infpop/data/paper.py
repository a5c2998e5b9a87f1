"""The paper's published trials: fetch its appendix files and import them as a tidy table.

The appendix's ``allData.csv`` (one row per trial) lost two columns, the GPU model and
``max_new_tokens``; both are recovered from the order of its rows:

* Rows of one (model, engine) pair keep their file order. Inside one run of the paper's sweep
  script the configurations (nrGPUs, batchSize) ascend, so a configuration that sorts *below*
  the one before it starts a new block (a new run). Blocks that simply stop early (a killed
  run) are handled by the same rule: the next block starts again from a lower configuration.
* Consecutive rows with the same (nrGPUs, batchSize) inside a block are one configuration,
  measured at max_new_tokens 5, 10, 20 in that order; a configuration may stop after 1 or 2
  rows (a killed or OOM-ended run, or a 5-token-only sweep), never has more than 3.
* The hardware of a block is the one whose ``table_gpuscale_<hw>_<engine>.csv`` agrees with
  the block's batch-size-1, 5-token throughput at every GPU count the block measured (NaN where
  that trial failed), to the table's printed precision. Exactly one must agree. (In the
  published data this gives A100 for each pair's first block and V100 for the second, except
  Codellama-34b-hf/autohf, whose A100 sweep was split over two blocks.)
"""

from __future__ import annotations

import csv
import hashlib
import math
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd

from infpop import atomic
from infpop.data.benchmark import PROMPTS
from infpop.trials import TIDY_COLUMNS

__all__ = [
    "APPENDIX_COMMIT",
    "APPENDIX_FILES",
    "APPENDIX_REPO",
    "PaperDataError",
    "fetch_appendix",
    "import_paper",
    "write_trials",
]

APPENDIX_REPO = "UPCBarcelonaTech/infpop"
APPENDIX_COMMIT = "1b4908c994fabf89a50b825f5ffdafedf807c890"

#: file name -> (path inside APPENDIX_REPO at APPENDIX_COMMIT, sha256 of its bytes)
APPENDIX_FILES: dict[str, tuple[str, str]] = {
    "allData.csv": (
        "allData.csv",
        "3618e14eedc829075d9dc187c314c77a4bfbaeaf31e764a405f601aca5f2bc3a",
    ),
    "table_gpuscale_a100_autohf.csv": (
        "RQ1/table_gpuscale_a100_autohf.csv",
        "12772c80a069c5e94afbb9596ce8a4694d1fb8a86e0ec9602aeef56add2ebb68",
    ),
    "table_gpuscale_a100_vLLM.csv": (
        "RQ1/table_gpuscale_a100_vLLM.csv",
        "d0dd627c502a74f1e120761b85a594f411a5806249f497ad69cf7e514c014fc2",
    ),
    "table_gpuscale_tesla_autohf.csv": (
        "RQ1/table_gpuscale_tesla_autohf.csv",
        "e00458fda13dc586e1bc0b3762d5432f6c8a1f0b0880df80c5424ba8663da891",
    ),
    "table_gpuscale_tesla_vLLM.csv": (
        "RQ1/table_gpuscale_tesla_vLLM.csv",
        "d0640281ec505768f51134f8313cafe226927f7c019547439c60b790c618098e",
    ),
}

ALL_DATA = "allData.csv"
DOWNLOAD_TIMEOUT_S = 60

#: The paper's engine names -> ours.
ENGINES = {"autohf": "hf", "vLLM": "vllm"}
#: The paper's hardware names (in the table file names) -> ours.
HARDWARE = {"a100": "a100", "tesla": "v100"}
#: The paper's errors_l -> our status vocabulary.
STATUSES = {
    "ok": "ok",
    "CUDA out of memory": "oom",
    "CUDA error": "error",
    "killed-noInfo": "crashed",
}
#: max_new_tokens of the 1st, 2nd and 3rd row of one configuration.
TOKENS = (5, 10, 20)
#: Prompts of every trial: all of HumanEval single-line infilling (III-E: "all items from the
#: Single-line infilling benchmark").
PAPER_PROMPTS = PROMPTS["humaneval_single_line_infilling"]

_FIX = (
    "set the config key paper_data.local_dir to a folder holding the appendix files "
    "(e.g. ../shared/data/infpop-appendix), or run `make run PAPER_DATA_DIR=<folder>`; "
    "or leave the replay out with paper_data.replay: false"
)


class PaperDataError(ValueError):
    """The paper's appendix files are missing, corrupt, or cannot be segmented."""


# --------------------------------------------------------------------------- fetching


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _url(path: str) -> str:
    return f"https://raw.githubusercontent.com/{APPENDIX_REPO}/{APPENDIX_COMMIT}/{path}"


def _download(name: str, path: str) -> bytes:
    url = _url(path)
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            return response.read()
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise PaperDataError(f"{name}: download from {url} failed ({exc}); to work offline, {_FIX}") from None


def fetch_appendix(dest: Path, local_dir: Path | None = None) -> Path:
    """Put the five appendix files in `dest`: copied from `local_dir`, or downloaded from the
    appendix repository at its pinned commit. Each file's sha256 is checked either way; a
    missing file, a failed download or a mismatch raises PaperDataError. Returns `dest`."""
    dest = Path(dest)
    if local_dir is not None:
        local_dir = Path(local_dir)
        if not local_dir.is_dir():
            raise PaperDataError(
                f"paper_data.local_dir {local_dir} is not a folder (needs {', '.join(APPENDIX_FILES)}); {_FIX}"
            )
    dest.mkdir(parents=True, exist_ok=True)
    for name, (repo_path, expected) in APPENDIX_FILES.items():
        if local_dir is not None:
            source = local_dir / name
            try:
                data = source.read_bytes()
            except OSError as exc:
                raise PaperDataError(f"{name}: cannot read {source} ({exc.strerror}); {_FIX}") from None
            origin = str(source)
        else:
            data = _download(name, repo_path)
            origin = _url(repo_path)
        actual = _sha256(data)
        if actual != expected:
            raise PaperDataError(
                f"{name}: sha256 mismatch for {origin} (expected {expected}, got {actual}): not the "
                f"file of {APPENDIX_REPO}@{APPENDIX_COMMIT}:{repo_path}; {_FIX}"
            )
        atomic.write_bytes(dest / name, data)
    return dest


# --------------------------------------------------------------------------- importing


def _read_gpuscale(path: Path) -> dict[str, tuple[dict[int, float], float]]:
    """model -> ({n_gpus: batch-1, 5-token throughput (NaN where missing)}, tolerance).

    The tolerance is half a unit in the table's last printed decimal (the HF tables are
    rounded to 0.1 tok/s, the vLLM ones are printed in full), plus a little for float repr."""
    try:
        with open(path, newline="") as handle:
            rows = list(csv.reader(handle))
    except OSError as exc:
        raise PaperDataError(f"{path.name}: cannot read {path} ({exc.strerror}); {_FIX}") from None
    if not rows or not rows[0] or rows[0][0] != "model":
        raise PaperDataError(f"{path.name}: expected a header 'model,1,2,4,...', got {rows[:1]}")
    try:
        gpu_counts = [int(col) for col in rows[0][1:]]
    except ValueError:
        raise PaperDataError(f"{path.name}: GPU-count header is not integers: {rows[0]}") from None
    decimals = 0
    parsed: dict[str, dict[int, float]] = {}
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(gpu_counts) + 1:
            raise PaperDataError(f"{path.name} line {line}: expected {len(gpu_counts) + 1} fields")
        values = {}
        for n_gpus, text in zip(gpu_counts, row[1:], strict=False):
            try:
                values[n_gpus] = float(text)
            except ValueError:
                raise PaperDataError(f"{path.name} line {line}: not a number: {text!r}") from None
            if "." in text and not math.isnan(values[n_gpus]):
                decimals = max(decimals, len(text.split(".", 1)[1]))
        parsed[row[0]] = values
    tolerance = 0.5 * 10.0**-decimals
    return {model: (values, tolerance) for model, values in parsed.items()}


def _agrees(measured: float, published: float, tolerance: float) -> bool:
    if math.isnan(measured) or math.isnan(published):
        return math.isnan(measured) and math.isnan(published)
    return abs(measured - published) <= tolerance + 1e-9 * max(1.0, abs(published))


def _read_all_data(path: Path) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path, index_col=0)
    except FileNotFoundError:
        raise PaperDataError(f"{path.name}: {path} not found; {_FIX}") from None
    except (OSError, ValueError) as exc:
        raise PaperDataError(f"{path.name}: cannot parse {path} ({exc})") from None
    needed = ["model", "engine", "nrGPUs", "batchSize", "throughput", "errors_l"]
    missing = [col for col in needed if col not in frame.columns]
    if missing:
        raise PaperDataError(f"{path.name}: missing columns {missing} (has {list(frame.columns)})")
    return frame


def import_paper(appendix_dir: Path) -> pd.DataFrame:
    """One tidy row (infpop.trials.TIDY_COLUMNS) per row of allData.csv, in its order, with the
    lost hardware and max_new_tokens recovered (see the module docstring)."""
    appendix_dir = Path(appendix_dir)
    source = appendix_dir / ALL_DATA
    frame = _read_all_data(source)
    tables = {
        (hardware, engine): _read_gpuscale(appendix_dir / f"table_gpuscale_{paper_hw}_{engine}.csv")
        for paper_hw, hardware in HARDWARE.items()
        for engine in ENGINES
    }

    def where(position: int) -> str:
        # CSV line: header is line 1, the first data row line 2.
        return f"{ALL_DATA} row {frame.index[position]} (line {position + 2})"

    models = frame["model"].astype(str).tolist()
    engines = frame["engine"].astype(str).tolist()
    throughputs = frame["throughput"].astype(float).tolist()
    raw_statuses = frame["errors_l"].astype(str).tolist()
    try:
        n_gpus = frame["nrGPUs"].astype(int).tolist()
        batch_sizes = frame["batchSize"].astype(int).tolist()
    except (TypeError, ValueError) as exc:
        raise PaperDataError(f"{ALL_DATA}: nrGPUs and batchSize must be integers ({exc})") from None

    n = len(frame)
    tokens: list[int] = [0] * n
    hardware: list[str] = [""] * n
    for position in range(n):
        if engines[position] not in ENGINES:
            raise PaperDataError(
                f"{where(position)}: unknown engine {engines[position]!r} (expected one of {sorted(ENGINES)})"
            )
        if raw_statuses[position] not in STATUSES:
            raise PaperDataError(
                f"{where(position)}: unknown status {raw_statuses[position]!r} (expected one of {sorted(STATUSES)})"
            )

    # Rows of one (model, engine) pair, in file order.
    pairs: dict[tuple[str, str], list[int]] = {}
    for position in range(n):
        pairs.setdefault((models[position], engines[position]), []).append(position)

    for (model, engine), positions in pairs.items():
        blocks: list[list[int]] = []
        previous: tuple[int, int] | None = None
        in_config = 0
        for position in positions:
            config = (n_gpus[position], batch_sizes[position])
            if previous is None or config < previous:
                blocks.append([])
                in_config = 0
            elif config > previous:
                in_config = 0
            if in_config >= len(TOKENS):
                raise PaperDataError(
                    f"{where(position)}: {model}/{engine} has more than {len(TOKENS)} consecutive "
                    f"rows for nrGPUs={config[0]}, batchSize={config[1]}; cannot assign max_new_tokens"
                )
            tokens[position] = TOKENS[in_config]
            in_config += 1
            blocks[-1].append(position)
            previous = config

        for block in blocks:
            # Batch size 1, 5 tokens: the first row of each (n_gpus, 1) configuration.
            evidence = {n_gpus[p]: throughputs[p] for p in block if batch_sizes[p] == 1 and tokens[p] == TOKENS[0]}
            matches = []
            for (hw, table_engine), table in tables.items():
                if table_engine != engine or model not in table:
                    continue
                published, tolerance = table[model]
                if evidence and all(
                    _agrees(value, published.get(g, math.nan), tolerance) for g, value in evidence.items()
                ):
                    matches.append(hw)
            if len(matches) != 1:
                shown = ", ".join(f"{g} GPU: {v:.4g}" for g, v in sorted(evidence.items())) or "none"
                raise PaperDataError(
                    f"{where(block[0])}: cannot tell the hardware of the {model}/{engine} block of "
                    f"{len(block)} rows starting here: its batch-1, 5-token throughput ({shown}) "
                    f"matches {'both ' + ' and '.join(matches) if matches else 'no'} "
                    f"table_gpuscale_*_{engine}.csv"
                )
            for p in block:
                hardware[p] = matches[0]

    statuses = [STATUSES[s] for s in raw_statuses]
    out = pd.DataFrame({column: [None] * n for column in TIDY_COLUMNS})
    out["hardware"] = hardware
    out["engine"] = [ENGINES[e] for e in engines]
    out["model"] = models
    out["n_gpus"] = n_gpus
    out["max_new_tokens"] = tokens
    out["batch_size"] = batch_sizes
    out["status"] = statuses
    out["throughput_tokens_per_s"] = throughputs  # as published, partial OOM throughput too
    out["error"] = [raw if status != "ok" else None for raw, status in zip(raw_statuses, statuses, strict=False)]
    identity = ["hardware", "engine", "model", "n_gpus", "max_new_tokens", "batch_size"]
    out["rep"] = out.groupby(identity, sort=False).cumcount()
    for column in ("n_gpus", "max_new_tokens", "batch_size", "rep"):
        out[column] = out[column].astype("int64")
    filled = identity + ["rep", "status", "throughput_tokens_per_s", "error", "prompts", "device_seconds"]
    for column in TIDY_COLUMNS:
        if column not in filled:
            out[column] = math.nan
    out["prompts"] = PAPER_PROMPTS
    out["device_seconds"] = device_seconds(out)
    return out[TIDY_COLUMNS]


def device_seconds(trials: pd.DataFrame) -> pd.Series:
    """What each published trial cost, from its throughput: every prompt's max_new_tokens tokens
    at that throughput, on n_gpus GPUs (the paper's trials ran on whole GPUs, one per rank). Known
    for finished trials only: how long a trial ran before it failed is not published (a partial
    out-of-memory trial's throughput is that of the part that ran, its length unknown), nor are the
    model loads' times."""
    finished = (trials["status"] == "ok") & (trials["throughput_tokens_per_s"] > 0)
    seconds = trials["prompts"] * trials["max_new_tokens"] / trials["throughput_tokens_per_s"] * trials["n_gpus"]
    return seconds.where(finished).astype(float)


def write_trials(df: pd.DataFrame, path: Path) -> None:
    """Write the tidy table as CSV (TIDY_COLUMNS, in order; empty cells for missing values)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    df.loc[:, TIDY_COLUMNS].to_csv(path, index=False)
