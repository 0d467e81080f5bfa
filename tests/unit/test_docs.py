"""The documentation's shape: README.md is the short entry (what it does, the two commands, a
quick start, where to read more), the rest lives in docs/; every relative link of README.md,
docs/ and the roles' READMEs names a file of the repository."""

from __future__ import annotations

import pathlib
import re

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted(REPO.glob("docs/*.md")), *sorted(REPO.glob("roles/*/README.md"))]
LINK = re.compile(r"\]\((?!https?:|mailto:|#)([^)#\s]+)(?:#[^)]*)?\)")


def test_the_readme_is_the_short_entry():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 300
    for name in ("operations", "security", "performance", "sizing", "development"):
        assert "docs/%s.md" % name in text


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_name_files_of_the_repository(doc):
    missing = [target for target in LINK.findall(doc.read_text()) if not (doc.parent / target).exists()]
    assert not missing, missing
