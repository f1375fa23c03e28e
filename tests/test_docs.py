"""README is a short user guide; history (dates, commits, run figures) lives in git, not in the
guide or the code."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ISO_DATE = re.compile(r"\b20\d\d-[01]\d-[0-3]\d\b")
# A commit hash: 7 to 40 hex characters with at least one letter and one digit.
COMMIT = re.compile(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*\d)[0-9a-f]{7,40}\b")


def test_readme_is_at_most_300_lines_without_dates_or_commits():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 300
    assert not ISO_DATE.findall(text) and not COMMIT.findall(text)


def test_the_code_and_docs_carry_no_dates_or_commits():
    found = []
    for path in [*ROOT.joinpath("tuner").rglob("*.py"), *ROOT.joinpath("docs").glob("*.md")]:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if ISO_DATE.search(line) or COMMIT.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, "\n".join(found)


def test_the_patterns_find_what_they_are_for():
    assert ISO_DATE.search("measured 2026-12-07") and COMMIT.search("at commit 9189c22")
    assert not COMMIT.search("learning_rate=0.0001693") and not ISO_DATE.search("1e-3")
