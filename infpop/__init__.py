"""InfPop: measure, explain and optimise LLM inference throughput."""

from pathlib import Path

#: Root of the repository (the folder holding Snakefile); the package lives inside it.
REPO_ROOT = Path(__file__).resolve().parent.parent
SCHEMA_DIR = REPO_ROOT / "workflow" / "schemas"
