"""Every relative link of README.md and docs/ resolves: its file exists and its anchor is a heading there;
every decision the docs name by number has its file in docs/decisions/."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
_FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
_LINK = re.compile(r"\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6} (.+)$", re.MULTILINE)
_DECISION = re.compile(r"\b(?:[Dd]ecisions? |decisions/)(\d{4})\b")


def _prose(path: Path) -> str:
    """The file's text without its fenced code blocks (a `# comment` there is no heading, a link no link)."""
    return _FENCE.sub("", path.read_text(encoding="utf-8"))


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text, lower case, punctuation but `-` dropped, spaces as `-`."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading anchors on its text
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    """Every anchor the file's headings give, the second of a name suffixed `-1` as GitHub does."""
    seen: dict[str, int] = {}
    anchors = set()
    for heading in _HEADING.findall(_prose(path)):
        slug = _slug(heading)
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _broken_links(path: Path) -> list[str]:
    broken = []
    for target in _LINK.findall(_prose(path)):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:: not ours to check offline
            continue
        file, _, anchor = target.partition("#")
        linked = (path.parent / file).resolve() if file else path
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
            broken.append(f"{target}: no such heading")
    return broken


@pytest.mark.parametrize("path", DOCS, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_relative_link_resolves(path: Path) -> None:
    """Each relative link names a file that exists and, when it has an anchor, a heading of that file."""
    assert _broken_links(path) == []


@pytest.mark.parametrize("path", DOCS, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_decision_named_has_its_file(path: Path) -> None:
    """`decision 0042`, `decisions 0013` or `decisions/0011` names a file docs/decisions/0042-*.md."""
    named = set(_DECISION.findall(_prose(path)))
    missing = sorted(n for n in named if not list((ROOT / "docs" / "decisions").glob(f"{n}-*.md")))
    assert missing == []


def test_a_broken_link_and_a_missing_decision_are_caught(tmp_path: Path) -> None:
    """The checks themselves fail on a wrong anchor, a missing file and a decision without its file."""
    page = tmp_path / "page.md"
    page.write_text("# Keys\n\n[a](#keys) [b](#no-such) [c](nowhere.md)\n", encoding="utf-8")
    assert _broken_links(page) == ["#no-such: no such heading", "nowhere.md: no such file"]
    assert _DECISION.findall("see decision 9999") == ["9999"]
    assert not list((ROOT / "docs" / "decisions").glob("9999-*.md"))


def test_every_alerts_runbook_url_names_a_runbook_section() -> None:
    """Each alert's `runbook_url` in deploy/prometheus/alerts.yml is a heading of docs/operations.md."""
    rules = (ROOT / "deploy" / "prometheus" / "alerts.yml").read_text(encoding="utf-8")
    urls = re.findall(r"runbook_url: (\S+)", rules)
    assert urls
    anchors = _anchors(ROOT / "docs" / "operations.md")
    wrong = []
    for url in urls:
        page, _, anchor = url.partition("#")
        if page != "docs/operations.md" or anchor not in anchors:
            wrong.append(url)
    assert wrong == []
