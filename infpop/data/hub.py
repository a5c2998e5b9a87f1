"""Models from the HuggingFace hub: fetched once, pinned, recorded.

`download` runs in the local rule `download_model`, on the machine that runs Snakemake (a
cluster's login node has the internet, its compute nodes often do not). It fetches one model's
snapshot into the config's `models_dir`, in the hub's own cache layout (files are stored once per
content, so a second download, or another revision sharing files, fetches nothing again), and
writes a small manifest beside it, `<models_dir>/<key>.json`: the repository, the revision asked
for, the commit it resolved to, the snapshot folder and its files. The manifest is the rule's
output, not the multi-GB folder, so Snakemake never walks or checksums the weights.

`infpop.data.models.model_files` is the other side: a sweep reads the manifest and gives the
engines the snapshot folder, with the hub offline, and every trial records the commit it measured.

A download that cannot succeed (a gated or missing repository, an unknown revision, no network)
raises HubError with one line naming the model and what to do.
"""

from __future__ import annotations

import json
import logging
import os
import time
from datetime import UTC, datetime
from io import StringIO
from pathlib import Path

from infpop import atomic

logger = logging.getLogger(__name__)

MANIFEST_VERSION = 1
DEFAULT_REVISION = "main"  # what the hub serves when no revision is given
#: Seconds between two progress lines of one progress bar in the job log.
PROGRESS_INTERVAL_S = 10.0
#: Weights of other frameworks (Flax, TensorFlow, Rust, ONNX): neither engine loads them.
OTHER_FRAMEWORK_WEIGHTS = ["*.msgpack", "*.h5", "*.ot", "*.onnx", "*.onnx_data", "*.tflite"]
#: PyTorch pickles: where safetensors weights exist they are a second copy of the same weights
#: (codellama/CodeLlama-70b-hf carries both, 2 x 138 GB). Both engines prefer safetensors.
PICKLED_WEIGHTS = ["*.bin", "*.pt", "*.pth"]
#: Mistral's own format beside the transformers shards (Codestral, Mistral): another copy.
MISTRAL_CONSOLIDATED = ["consolidated*.safetensors"]


class HubError(RuntimeError):
    """A download that cannot succeed; the message is one line: the model and what to do."""


class SnapshotMissing(RuntimeError):
    """A hub model whose snapshot is not (fully) on disk: the download rule has not run."""


def manifest_path(models_dir: str | Path, key: str) -> Path:
    return Path(models_dir) / f"{key}.json"


def skip_patterns(files: list[str]) -> list[str]:
    """Files of a repository not worth fetching: other frameworks' weights, and second copies of
    the weights beside safetensors ones."""
    patterns = list(OTHER_FRAMEWORK_WEIGHTS)
    if any(name.endswith(".safetensors") for name in files):
        patterns += PICKLED_WEIGHTS
        if {"model.safetensors", "model.safetensors.index.json"} & set(files):
            patterns += MISTRAL_CONSOLIDATED
    return patterns


class _LogProgress:
    """tqdm classes that write whole lines to the log (a job log is a file, where a terminal
    progress bar's carriage returns would pile up on one line): at most one line per bar every
    PROGRESS_INTERVAL_S, and a last one when `finish` closes the bars. huggingface_hub leaves
    some bars to the garbage collector; after `finish` they stay silent."""

    def __init__(self):
        from tqdm.std import tqdm

        self.bars, self.done = [], False
        owner = self

        class Bar(tqdm):
            def __init__(self, *args, **kwargs):
                kwargs.pop("name", None)  # huggingface_hub's own tqdm takes a name; tqdm does not
                # The bytes received, beside the bytes written: the same figure for plain downloads.
                self.quiet = str(kwargs.get("desc", "")).startswith("Downloading bytes")
                kwargs.update(file=StringIO(), mininterval=PROGRESS_INTERVAL_S, miniters=1)
                self.logged_n = None
                super().__init__(*args, **kwargs)
                owner.bars.append(self)

            def display(self, msg=None, pos=None):
                data = self.format_dict
                if owner.done or self.quiet or data["n"] in (0, self.logged_n):
                    return True
                self.logged_n = data["n"]
                in_bytes = data["unit"] == "B"

                def size(value):
                    return self.format_sizeof(value, "B", 1024) if in_bytes else f"{value:,.0f}"

                label = "downloaded" if in_bytes else (data["prefix"] or "progress").rstrip(": ")
                line = f"{label}: {size(data['n'])}"
                if data["total"]:
                    line += f" of {size(data['total'])} ({100 * data['n'] / data['total']:.0f}%)"
                if in_bytes and data["elapsed"]:
                    line += f", {size(data['n'] / data['elapsed'])}/s"
                logger.info(line)
                return True

        self.tqdm_class = Bar

    def finish(self, report: bool) -> None:
        """Close every bar (with its last line if `report`), then silence them."""
        self.done = not report
        for bar in self.bars:
            if not bar.disable:
                bar.close()
        self.done = True


def _explain(
    exc: BaseException, key: str, repo_id: str, revision: str, endpoint: str, has_token: bool, where: str
) -> str | None:
    """The one line for a download failure the user can act on, or None for anything else."""
    import httpx2
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    page = f"{endpoint}/{repo_id}"
    model = f"model '{key}' ({repo_id})"
    if isinstance(exc, GatedRepoError):  # before RepositoryNotFoundError: it is a subclass
        if has_token:
            return (
                f"{model} is gated and your token (HF_TOKEN or `hf auth login`) has no access to it: "
                f"accept its licence at {page} with that token's account (and wait for approval if it asks)"
            )
        return (
            f"{model} is gated: accept its licence at {page}, then set HF_TOKEN to a token of that "
            f"account (or run `hf auth login`) on the machine that runs Snakemake"
        )
    if isinstance(exc, RepositoryNotFoundError):
        private = (
            "it is private and your token has no access"
            if has_token
            else "it is private: set HF_TOKEN or run `hf auth login`"
        )
        return f"{model} was not found on {endpoint}: check models.{key}.hf_id{where} (or {private})"
    if isinstance(exc, RevisionNotFoundError):
        return (
            f"{model} has no revision '{revision}': check models.{key}.revision{where} "
            f"(a branch, tag or commit of {page})"
        )
    if isinstance(exc, (OfflineModeIsEnabled, LocalEntryNotFoundError, httpx2.ConnectError, httpx2.TimeoutException)):
        offline = (
            " (HF_HUB_OFFLINE is set: unset it for the download)"
            if isinstance(exc, OfflineModeIsEnabled) or isinstance(exc.__cause__, OfflineModeIsEnabled)
            else ""
        )
        return (
            f"{model}: cannot reach the hub at {endpoint}{offline}; the download runs on the machine "
            f"that runs Snakemake, which needs the internet (or HF_ENDPOINT pointing to a mirror)"
        )
    if isinstance(exc, HfHubHTTPError) and exc.response is not None and exc.response.status_code == 401:
        return f"{model}: the hub at {endpoint} refused the token (401): check HF_TOKEN or run `hf auth login`"
    return None


def download(
    key: str,
    repo_id: str,
    revision: str | None,
    models_dir: str | Path,
    *,
    endpoint: str | None = None,
    token: str | None = None,
    config_file: str | None = None,
) -> dict:
    """Fetch `repo_id` at `revision` (default: the main branch) into `models_dir` and write its
    manifest, `<models_dir>/<key>.json`; return the manifest. Files already there are not fetched
    again. Raises HubError with one line for a gated or missing repository, an unknown revision
    or an unreachable hub. `endpoint` and `token` default to huggingface_hub's (HF_ENDPOINT,
    HF_TOKEN or the saved login)."""
    import huggingface_hub
    from huggingface_hub import HfApi, constants, get_token, snapshot_download
    from huggingface_hub.file_download import repo_folder_name
    from huggingface_hub.utils import filter_repo_objects

    endpoint = (endpoint or constants.ENDPOINT).rstrip("/")
    asked = revision or DEFAULT_REVISION
    models_dir = Path(models_dir).expanduser().resolve()
    started = time.monotonic()
    logger.info(f"{key}: {repo_id} at revision {asked} from {endpoint} into {models_dir}")
    try:
        # Resolve the revision to a commit first and fetch that commit: the files listed and the
        # files fetched are one snapshot even if the branch moves meanwhile.
        info = HfApi(endpoint=endpoint, token=token).model_info(repo_id, revision=asked)
        files = [sibling.rfilename for sibling in info.siblings or []]
        skip = skip_patterns(files)
        skipped = sorted(set(files) - set(filter_repo_objects(files, ignore_patterns=skip)))
        logger.info(
            f"{key}: revision {asked} is commit {info.sha}; {len(files)} file(s), fetching "
            f"{len(files) - len(skipped)}"
            + (
                f", not {', '.join(skipped)} (weights of another format, or a second copy of the safetensors weights)"
                if skipped
                else ""
            )
        )
        fetched = [name for name in files if name not in skipped]
        if all(
            (
                models_dir / repo_folder_name(repo_id=repo_id, repo_type="model") / "snapshots" / info.sha / name
            ).is_file()
            for name in fetched
        ):
            logger.info(f"{key}: every file is already in {models_dir}: nothing to download")
        progress = _LogProgress()
        try:
            folder = snapshot_download(
                repo_id,
                revision=info.sha,
                cache_dir=models_dir,
                endpoint=endpoint,
                token=token,
                ignore_patterns=skip,
                tqdm_class=progress.tqdm_class,
            )
        except BaseException:
            progress.finish(report=False)
            raise
        progress.finish(report=True)
    except Exception as exc:
        where = f" in {config_file}" if config_file else ""
        message = _explain(exc, key, repo_id, asked, endpoint, bool(token or get_token()), where)
        if message is None:
            raise
        raise HubError(message) from exc
    snapshot = Path(folder)
    # The files this download asked for (the folder may hold more, fetched under other settings).
    listed = [{"path": name, "bytes": (snapshot / name).stat().st_size} for name in sorted(fetched)]
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "model": key,
        "repo_id": repo_id,
        "revision": asked,
        "commit": info.sha,
        # relative to models_dir, so the folder can be reached from wherever models_dir is mounted
        "snapshot": os.path.relpath(snapshot, models_dir),
        "endpoint": endpoint,
        "skipped_files": skipped,
        "files": listed,
        "total_bytes": sum(f["bytes"] for f in listed),
        "downloaded_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "huggingface_hub": huggingface_hub.__version__,
    }
    atomic.write_text(manifest_path(models_dir, key), json.dumps(manifest, indent=1) + "\n")
    logger.info(
        f"{key}: {repo_id}@{info.sha}: {len(listed)} file(s), {manifest['total_bytes'] / 1e9:.3f} GB in "
        f"{snapshot} ({time.monotonic() - started:.1f} s)"
    )
    return manifest


def read_manifest(models_dir: str | Path, key: str) -> dict:
    path = manifest_path(models_dir, key)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise SnapshotMissing(
            f"model '{key}' has not been downloaded ({path} is missing): run "
            f"`snakemake {path}` on a machine that reaches the hub"
        ) from None
    except (OSError, json.JSONDecodeError) as exc:
        raise SnapshotMissing(
            f"{path}: cannot read the model's download manifest ({exc}); delete it and download again"
        ) from None
