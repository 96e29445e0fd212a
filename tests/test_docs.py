"""The README and docs/: every relative link leads to a file that exists, and to a heading of it where
it names one (#anchor, as GitHub makes them); the README stays short and maps every page."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def prose(text: str) -> str:
    """The text outside fenced code blocks and inline code (where brackets are code, not links)."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def anchors(path: Path) -> set[str]:
    """GitHub's anchors for a page's headings: lower case, punctuation dropped, spaces as hyphens,
    a repeated heading numbered -1, -2, ..."""
    seen: dict[str, int] = {}
    out = set()
    for line in re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.S | re.M).splitlines():
        m = re.match(r"#{1,6} +(.+?) *#*$", line)
        if not m:
            continue
        slug = re.sub(r"[^\w\- ]", "", m.group(1).lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def test_anchor_slugs_as_github_makes_them(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# A title\n## The serving runtime: ONNX Runtime\n## `preprocess.py`\n```\n# not a heading\n```\n"
                    "## Slow clients, timeouts and limits\n## A title\n")
    assert anchors(page) == {"a-title", "the-serving-runtime-onnx-runtime", "preprocesspy",
                             "slow-clients-timeouts-and-limits", "a-title-1"}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(page):
    broken = []
    for target in LINK.findall(prose(page.read_text(encoding="utf-8"))):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):   # http:, https:, mailto: are not checked (no network)
            continue
        file, _, anchor = target.partition("#")
        path = (page.parent / file).resolve() if file else page
        if not path.exists():
            broken.append(f"{target}: no file {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(f"{target}: no heading #{anchor} in {path.relative_to(REPO)}")
    assert not broken, f"broken links in {page.relative_to(REPO)}:\n" + "\n".join(broken)


def test_readme_is_short_and_maps_every_page():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 250, "the README is the front door: put the topic on its page under docs/"
    linked = {(REPO / t.partition("#")[0]).resolve() for t in LINK.findall(prose(readme))}
    unmapped = [p.name for p in PAGES[1:] if p.resolve() not in linked]
    assert not unmapped, f"docs/ pages missing from the README's map: {unmapped}"
