"""`make notebooks`: execute every chapter in full mode with papermill and write the outputs back.

Usage: python -m tests.chapters.run_notebooks [NOTEBOOK ...] [--workers N] [--scheduler ADDRESS] [--threads N]
                                              [--results DIR] [--fresh | --resume]
(default: every notebook page, on a local Dask cluster sized to the machine: see memlib.execute)

Each page is one unit of memlib.execute: executed into a temporary file and moved over the original only when it
ran to the end, so a failing page keeps its previous outputs and is reported while the others go on. Pages that
time something (TIMED) run after the others, alone, with all of the machine's cores. A page that
finished is saved in the results directory (default _build/runs/notebooks); a run of every page (no NOTEBOOK
named, or --resume) does not run it again while its cells and the code of memlib and widgets are unchanged
(--fresh runs it all the same). Pages named are run. The ledger page
(book/article_checked.ipynb, every claim box of the pages in one table) is executed last, whenever a page of the
book was named, with the pages as they are then. Exit status 1 when a page failed.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import papermill

from memlib.execute import GIB, Executor, Unit, source_fingerprint, visible_gpus
from tests.chapters.pages import ROOT, notebook_pages

LEDGER = ROOT / "book" / "article_checked.ipynb"
PAGE_MEMORY = 6 * GIB  # the largest full-mode page's kernel at its peak, with room
# A page that calls these measures time for a claim's verdict or a table: it runs alone, as in a serial run.
TIMED = re.compile(r"time_ratio\(|target_met\(|time_call\(|memlib\.bench")


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
            print(slowest_cells(nb, path.stem), flush=True)
            for cell in nb.cells:  # per-cell timestamps only make diffs noisy
                cell.metadata.pop("papermill", None)
                cell.metadata.pop("execution", None)
            nbformat.write(nb, str(out))
            shutil.move(out, path)
    finally:
        if env_quick is not None:
            os.environ["BOOK_QUICK"] = env_quick
    return seconds


def slowest_cells(nb, name: str, count: int = 6) -> str:
    """The ``count`` code cells that took longest in papermill's run of ``nb``: where a page's time goes."""
    timed = sorted(((c.metadata.get("papermill", {}).get("duration") or 0.0, i, c.source.strip().split("\n")[0])
                    for i, c in enumerate(nb.cells) if c.cell_type == "code"), reverse=True)
    total = sum(t for t, _, _ in timed)
    return f"{name}: {total:.0f} s in cells; slowest: " + "; ".join(
        f"cell {i} {t:.0f} s ({first[:50]})" for t, i, first in timed[:count])


def execute_page(path: str) -> dict:
    """One unit: the page executed in full mode and written back; its time and size."""
    seconds = execute_full(Path(path))
    return dict(seconds=seconds, kB=round(Path(path).stat().st_size / 1e3))


def page_unit(path: Path, threads: int | None, gpu: bool, **config: str) -> Unit:
    """The page as a unit: its config holds a hash of its cells (their sources, not their outputs); a page that
    times something for a verdict or a table runs alone (exclusive), with all of the machine's cores."""
    nb = nbformat.read(path, as_version=4)
    cells = hashlib.sha256("\0".join(c.cell_type + c.source for c in nb.cells).encode()).hexdigest()[:16]
    timed = any(c.cell_type == "code" and TIMED.search(c.source) for c in nb.cells)
    rel = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
    return Unit(path.stem, execute_page, (str(path),), dict(page=rel, sources=cells, **config), threads, PAGE_MEMORY,
                gpu, exclusive=timed)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chapters.run_notebooks", description=__doc__.splitlines()[0])
    parser.add_argument("pages", nargs="*", metavar="NOTEBOOK", help="pages to run (default: every notebook page)")
    parser.add_argument("--workers", type=int, help="local workers (default: as many as the machine holds; 1: serial)")
    parser.add_argument("--scheduler", help="address of an existing Dask scheduler (default: $MEMLIB_SCHEDULER)")
    parser.add_argument("--threads", type=int, help="threads per page (default: all of its worker's)")
    parser.add_argument("--results", type=Path, default=ROOT / "_build" / "runs" / "notebooks", help="saved pages")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--fresh", action="store_true", help="run every page again, saved or not")
    mode.add_argument("--resume", action="store_true", help="skip the pages named that are saved and unchanged")
    args = parser.parse_args(argv)
    wrong = [p for p in args.pages if not p.endswith(".ipynb") or not Path(p).is_file()]
    if wrong:
        parser.error(f"expected notebook files (.ipynb), got {', '.join(wrong)}")
    book = notebook_pages()
    targets = [Path(a).resolve() for a in args.pages] or book
    pages = [path for path in targets if path != LEDGER]
    code = source_fingerprint(ROOT / "memlib", ROOT / "widgets")
    gpu = bool(visible_gpus())
    fresh = args.fresh or (bool(args.pages) and not args.resume)  # a page named is a page to run
    with Executor(args.results, workers=args.workers, scheduler=args.scheduler, fresh=fresh) as ex:
        records = ex.run([page_unit(p, args.threads, gpu, code=code) for p in pages])
        # The ledger reads the book's pages: last, once, with them as they are now.
        if LEDGER in targets or any(p in book for p in pages):
            state = hashlib.sha256(b"".join(p.read_bytes() for p in book if p != LEDGER)).hexdigest()[:16]
            ledger = page_unit(LEDGER, args.threads, False, code=code, pages=state)
            records += ex.run([ledger])
    return int(any(r["status"] != "done" for r in records))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
