"""`make notebooks`: execute every chapter in full mode with papermill and write the outputs back.

Usage: python -m tests.chapters.run_notebooks [NOTEBOOK ...]   (default: every notebook page)

Each notebook is executed into a temporary file and moved over the original only when it ran to
the end, so a failing chapter keeps its previous outputs. The ledger page (book/article_checked.ipynb,
every claim box of the pages in one table) is executed last, whenever another page was re-run.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import papermill

from tests.chapters.pages import ROOT, notebook_pages

LEDGER = ROOT / "book" / "article_checked.ipynb"


def execute_full(path: Path) -> float:
    env_quick = os.environ.pop("BOOK_QUICK", None)
    os.environ.pop("BOOK_LIVE", None)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / path.name
            start = time.perf_counter()
            papermill.execute_notebook(str(path), str(out), kernel_name="python3", cwd=str(path.parent),
                                       progress_bar=False)
            seconds = time.perf_counter() - start
            nb = nbformat.read(out, as_version=4)
            for cell in nb.cells:  # per-cell timestamps only make diffs noisy
                cell.metadata.pop("papermill", None)
                cell.metadata.pop("execution", None)
            nbformat.write(nb, str(out))
            shutil.move(out, path)
    finally:
        if env_quick is not None:
            os.environ["BOOK_QUICK"] = env_quick
    return seconds


def main(argv: list[str]) -> int:
    targets = [Path(a).resolve() for a in argv if a.endswith(".ipynb")] or notebook_pages()
    if any(path != LEDGER for path in targets):  # the ledger reads the pages' outputs: last, and once
        targets = [path for path in targets if path != LEDGER] + [LEDGER]
    for path in targets:
        seconds = execute_full(path)
        print(f"{path}: {seconds:.1f} s, {path.stat().st_size / 1e3:.0f} kB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
