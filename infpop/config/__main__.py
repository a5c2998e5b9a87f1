"""Check config files the way the workflow will, without Snakemake:

    python -m infpop.config [FILE ...] [--config KEY=VALUE ...]

Files default to config.yaml. Snakemake reads --configfile files itself before the workflow
starts, and a file it cannot read at all (missing, or not YAML) stops it with its own message,
before InfPop can say where the problem is: this command says it, with the file, line and column.
Exit status 0 when the config holds, 1 with every problem otherwise.
"""

from __future__ import annotations

import argparse
import sys

from snakemake.cli import parse_config

from infpop import REPO_ROOT
from infpop.config import ConfigError, load_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infpop.config", description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", help="config files, merged in order (default: config.yaml)")
    parser.add_argument(
        "--config", nargs="*", default=[], metavar="KEY=VALUE", help="overrides, as Snakemake's --config"
    )
    args = parser.parse_args(argv)
    try:
        load_config(*(args.files or [REPO_ROOT / "config.yaml"]), overrides=parse_config(args.config))
    except (ConfigError, ValueError) as exc:
        print(f"InfPop: {exc}", file=sys.stderr)
        return 1
    print(f"{', '.join(map(str, args.files or ['config.yaml']))}: the config holds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
