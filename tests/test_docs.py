"""The documentation: a README that fits on a screen, links that lead somewhere, and a
configuration reference that is the schema's own text."""

from __future__ import annotations

import re
import subprocess
import sys

from conftest import REPO


def test_the_configuration_reference_is_what_the_schema_gives():
    done = subprocess.run(
        [sys.executable, "-m", "tools.config_reference", "--check"], cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def test_the_readme_fits_on_a_screen_and_every_link_resolves():
    readme = (REPO / "README.md").read_text()
    assert len(readme.encode()) < 6000 and readme.count("\n") < 80
    for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#]+)\)", path.read_text()):
            if not target.startswith("http"):
                assert (path.parent / target).exists(), f"{path.name} links to {target}, which does not exist"
