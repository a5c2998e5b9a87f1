"""Draw docs/rulegraph.png, the rules of the default run, for the README (needs Graphviz's `dot`).

    python -m tools.rulegraph

The target rule `all` is left out: every output leads there, and its edges hide the stages.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile

from infpop import REPO_ROOT

OUT = REPO_ROOT / "docs" / "rulegraph.png"


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        dot = subprocess.run(
            [
                sys.executable,
                "-m",
                "snakemake",
                "--snakefile",
                str(REPO_ROOT / "Snakefile"),
                "--rulegraph",
                "--cores",
                "1",
                "--directory",
                scratch,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    node = re.search(r'\t(\d+)\[label = "all"', dot).group(1)
    kept = [
        line
        for line in dot.splitlines()
        if not re.match(rf"\s*{node}\[label", line) and not re.search(rf"-> {node}\b", line)
    ]
    subprocess.run(["dot", "-Tpng", "-Gdpi=64", "-o", str(OUT)], input="\n".join(kept), text=True, check=True)
    print(f"wrote {OUT.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main()
