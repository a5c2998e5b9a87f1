"""Fit the cost model on the paper's published trials (runtime_estimate.calibration: paper) and
write it beside the code that reads it, infpop/cluster/paper_cost_model.json: the plan needs it
before any data is imported, on machines without the appendix.

    python -m tools.cost_model [APPENDIX_DIR]          write the file (default ../shared/data/infpop-appendix)
    python -m tools.cost_model [APPENDIX_DIR] --check  exit 1 if the committed file differs

The models' parameters are configs/paper.yaml's (Table I).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from infpop import REPO_ROOT
from infpop.cluster.cost_model import PAPER_MODEL, calibrate
from infpop.data.paper import APPENDIX_COMMIT, APPENDIX_REPO, import_paper

DEFAULT_APPENDIX = REPO_ROOT.parent / "shared" / "data" / "infpop-appendix"
SOURCE = f"the paper's published trials ({APPENDIX_REPO}@{APPENDIX_COMMIT[:7]})"


def paper_params() -> dict[str, float | None]:
    import yaml

    models = yaml.safe_load((REPO_ROOT / "configs" / "paper.yaml").read_text())["models"]
    return {name: spec.get("params_billion") for name, spec in models.items()}


def fitted(appendix: Path) -> str:
    return calibrate(import_paper(appendix), paper_params(), SOURCE).to_json()


def same(stored, fresh, rel=1e-5) -> bool:
    """Two fits alike but for the last digits (another machine's linear algebra)."""
    if isinstance(stored, dict) and isinstance(fresh, dict):
        return stored.keys() == fresh.keys() and all(same(stored[k], fresh[k], rel) for k in stored)
    if isinstance(stored, list) and isinstance(fresh, list):
        return len(stored) == len(fresh) and all(same(a, b, rel) for a, b in zip(stored, fresh, strict=True))
    if isinstance(stored, float) or isinstance(fresh, float):
        return math.isclose(stored, fresh, rel_tol=rel, abs_tol=1e-9)
    return stored == fresh


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("appendix", nargs="?", type=Path, default=DEFAULT_APPENDIX)
    parser.add_argument("--check", action="store_true", help="compare with the committed file instead of writing")
    args = parser.parse_args(argv)
    text = fitted(args.appendix)
    if args.check:
        if not same(json.loads(PAPER_MODEL.read_text()), json.loads(text)):
            print(f"{PAPER_MODEL} is not the fit of {args.appendix}: run python -m tools.cost_model", file=sys.stderr)
            return 1
        return 0
    PAPER_MODEL.write_text(text)
    print(f"wrote {PAPER_MODEL.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
