"""The CPU lock (requirements.txt beside the package): the exact pins of the pipeline's
environment, as `pip install --no-deps -r requirements.txt` installs them. Read by the product (an
install hint names the pinned version) and by the environment generator (tools/envs.py)."""

from __future__ import annotations

import re
from pathlib import Path

from packaging.utils import canonicalize_name

from infpop import REPO_ROOT

LOCK = REPO_ROOT / "requirements.txt"


def read_lock(path: Path = LOCK) -> dict[str, tuple[str, str]]:
    """{canonical name: (name as written, version)} of every `name==version` line."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", line)
        if match:
            pins[canonicalize_name(match[1])] = (match[1], match[2])
    return pins
