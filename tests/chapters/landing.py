"""The claims block of each chapter's landing page, written from the claim records of its sections.

A landing page (``book/ch02_core_architectures.md`` ...) lists its sections in prose; between the markers
``<!-- claims:start -->`` and ``<!-- claims:end -->`` it lists every claim its sections check, each with its
verdict and deciding numbers, written by this module from the records in the sections' committed outputs:
no number on a landing page is copied by hand, and a test fails when a block and the records disagree.

Usage: ``python -m tests.chapters.landing`` rewrites the blocks from the committed pages' records;
``tests/chapters/test_ledger.py`` fails when a block is out of date.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from memlib import claims
from tests.chapters.pages import ROOT

START, END = "<!-- claims:start -->", "<!-- claims:end -->"


def landing_pages() -> dict[Path, list[Path]]:
    """Each landing page (a Markdown chapter file with sections) and its sections' notebooks, in order."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    out = {}
    for part in toc["parts"]:
        for chapter in part["chapters"]:
            page = ROOT / f"{chapter['file']}.md"
            if page.exists() and chapter.get("sections"):
                notebooks = [ROOT / f"{s['file']}.ipynb" for s in chapter["sections"]]
                if any(n.exists() for n in notebooks):  # the API reference's index has Markdown sections only
                    out[page] = [n for n in notebooks if n.exists()]
    return out


def block(notebooks: list[Path]) -> str:
    """The Markdown between the markers for these sections."""
    lines = [START, "", "The claims these sections check, with the verdicts and numbers of their committed runs",
             "(all of them: {doc}`article_checked`):", ""]
    for record in claims.collect(notebooks):
        measured = claims.measured_text(record).replace("*", "\\*")
        lines.append(
            f"- {{doc}}`{record['page']}`, section {record['section']}: *\u201c{record['quote']}\u201d* "
            f"**{claims.LABELS[record['verdict']]}** ({measured})"
        )
    return "\n".join([*lines, "", END])


def current(text: str, notebooks: list[Path]) -> str:
    """``text`` with its block rewritten (appended at the end where it has none)."""
    new = block(notebooks)
    if START in text and END in text:
        head, rest = text.split(START, 1)
        return head + new + rest.split(END, 1)[1]
    return text.rstrip("\n") + "\n\n" + new + "\n"


def main() -> int:
    for page, notebooks in landing_pages().items():
        text = page.read_text()
        page.write_text(current(text, notebooks))
        print(f"{page.relative_to(ROOT)}: {len(claims.collect(notebooks))} claims")
    return 0


if __name__ == "__main__":
    sys.exit(main())
