"""The book's pages, read from _toc.yml (the one list of chapters)."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _files(entries: list[dict]) -> list[str]:
    out = []
    for entry in entries:
        if "file" in entry:
            out.append(entry["file"])
        out.extend(_files(entry.get("sections", [])))
    return out


def toc_files() -> list[str]:
    """Every file in the table of contents (without suffix), root first, in reading order."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    # A jb-book toc lists its chapters directly or, split into parts, under each part.
    chapters = toc.get("chapters") or [c for part in toc["parts"] for c in part["chapters"]]
    return [toc["root"], *_files(chapters)]


def notebook_pages() -> list[Path]:
    """The pages that are notebooks (the rest are short Markdown landing pages)."""
    pages = [ROOT / f"{name}.ipynb" for name in toc_files()]
    return [p for p in pages if p.exists()]
