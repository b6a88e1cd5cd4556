"""The documentation builds strictly, the README stays a short entry point whose links resolve, and every option
found in conf/ is documented (a new option without a docs row fails here, not in a user's hands)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from ablate.components.options import option_names
from ablate.spec import FAMILIES
from tests.fixtures.variants import REPO_ROOT

README = REPO_ROOT / "README.md"


def test_docs_site_builds_strictly(tmp_path):
    pytest.importorskip("mkdocs", reason="the docs extra (pip install -e '.[docs]') is not installed")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "site" / "components" / "index.html").exists()


def test_readme_is_short_and_its_links_resolve():
    text = README.read_text()
    assert len(text.splitlines()) <= 250
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [t for t in targets if "://" not in t]
    assert local, "the README links to its docs pages"
    assert [t for t in local if not (REPO_ROOT / t).exists()] == []


@pytest.mark.parametrize("family", [*FAMILIES, "model", "data", "tokenizer"])
def test_every_option_is_documented(family):
    documented = (REPO_ROOT / "docs" / "components.md").read_text() + (REPO_ROOT / "docs" / "data.md").read_text()
    missing = [name for name in option_names(family)
               if f"`{name}`" not in documented and f"`{family}={name}" not in documented]
    assert missing == [], f"{family} options without a row in docs/components.md or docs/data.md: {missing}"
