"""Every notebook page of the book executed once in quick mode, one test per page.

The design card asks that "papermill and nbval execute every chapter in CI". Each page runs once:
papermill executes it (parameters quick=True, live=False), then nbval's comparison checks it: the
cells tagged `nbval-check-output` must show the same outputs as the committed notebook, after the
regexes of tests/nbval_sanitize.cfg (Bokeh's random ids), compared and reported by nbval's own code
as `pytest --nbval-lax --nbval-sanitize-with tests/nbval_sanitize.cfg` would (see nbval_compare.py).
Before, `make test` executed every page twice, once for each tool.

Environment:
- BOOK_PAGES="ch06_hardware ch07_software_memory" runs only these pages (stems, spaces or commas).
- BOOK_DEVICE=cuda passes device="cuda" to every page (`make test-gpu`) and skips the comparison
  (see test_page_runs_in_quick_mode).
- BOOK_PORTABLE_PAGES="ch06_hardware ..." runs these pages a second time, their kernels started with the variables
  of BOOK_PORTABLE_ENV ("ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=default": an older CPU), compared the same way.
  `make test` runs them in the same pool of workers as the other pages (the Makefile's PORTABLE_PAGES).
"""

from __future__ import annotations

import os
import re
import time

import nbformat
import papermill
import pytest

from tests.chapters.nbval_compare import colors_for, compare_notebooks, sanitize_patterns
from tests.chapters.pages import ROOT, notebook_pages

ALL_PAGES = notebook_pages()


def _named_pages(variable: str) -> list:
    """The pages whose stems the environment variable names (spaces or commas); none where it is unset."""
    wanted = [w for w in re.split(r"[\s,]+", os.environ.get(variable, "")) if w]
    stems = {p.stem: p for p in ALL_PAGES}
    unknown = [w for w in wanted if w not in stems]
    if unknown:
        raise pytest.UsageError(f"{variable} names pages that are not in _toc.yml: {unknown}")
    return [stems[w] for w in wanted]


PAGES = _named_pages("BOOK_PAGES") or ALL_PAGES


def _portable():
    """The pages to run again under BOOK_PORTABLE_ENV, and that environment as a dict."""
    pages = _named_pages("BOOK_PORTABLE_PAGES")
    pairs = [w for w in re.split(r"\s+", os.environ.get("BOOK_PORTABLE_ENV", "")) if w]
    bad = [w for w in pairs if "=" not in w]
    if bad or (pages and not pairs):
        raise pytest.UsageError(f"BOOK_PORTABLE_ENV: expected NAME=VALUE pairs for BOOK_PORTABLE_PAGES, got {pairs}")
    return pages, dict(w.split("=", 1) for w in pairs)


PORTABLE_PAGES, PORTABLE_ENV = _portable()
# The second runs first: chapter 6 is among the longest pages, and a long run started last would leave a worker idle.
RUNS = [(p, PORTABLE_ENV) for p in PORTABLE_PAGES] + [(p, {}) for p in PAGES]
# The committed outputs come from a CPU run, so `make test` compares CPU runs even where a GPU is present;
# `make test-gpu` sets BOOK_DEVICE=cuda.
DEVICE = os.environ.get("BOOK_DEVICE", "cpu")


@pytest.mark.parametrize(("path", "env"), RUNS, ids=[p.stem + ("-portable" if e else "") for p, e in RUNS])
def test_page_runs_in_quick_mode(path, env, tmp_path, request, page_seconds, monkeypatch):
    parameters = {"quick": True, "live": False}
    if DEVICE:
        parameters["device"] = DEVICE
    for name, value in env.items():  # the kernel inherits them when it starts (monkeypatch restores them)
        monkeypatch.setenv(name, value)
    start = time.perf_counter()
    executed = papermill.execute_notebook(
        str(path), str(tmp_path / path.name), parameters=parameters,
        kernel_name="python3", cwd=str(path.parent), progress_bar=False,
    )
    seconds = time.perf_counter() - start
    page = str(path.relative_to(ROOT)) + (" (" + " ".join(f"{k}={v}" for k, v in env.items()) + ")" if env else "")
    page_seconds(page, seconds)
    print(f"{page}: {seconds:.1f} s in quick mode" + (f" on {DEVICE}" if DEVICE else ""))

    if DEVICE and DEVICE != "cpu":
        # The committed outputs come from a CPU run. On another device, kernels round differently
        # (other reduction orders, TF32 matmuls) and printed tensors name their device, so checked
        # cells would differ for reasons that are not bugs: `make test-gpu` checks that every page
        # runs on the device; the comparison is `make test`'s.
        return
    reference = nbformat.read(path, as_version=4)
    mismatches = compare_notebooks(executed, reference, sanitize_patterns(), config=request.config,
                                   colors=colors_for(request.config))
    if mismatches:
        report = "\n\n".join(m.describe() for m in mismatches)
        pytest.fail(f"{page}: {len(mismatches)} checked cell(s) differ from the committed outputs "
                    f"(nbval comparison, quick mode vs committed notebook):\n\n{report}", pytrace=False)


def test_every_page_has_the_parameters_cell():
    for path in ALL_PAGES:
        nb = nbformat.read(path, as_version=4)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, f"{path.name}: expected one cell tagged 'parameters', got {len(tagged)}"
        for name in ("quick", "seed", "device", "live"):
            assert f"{name} =" in tagged[0].source, f"{path.name}: the parameters cell does not set {name!r}"


def test_nbval_markers_are_tags_not_comments():
    """Readers see cell sources: nbval's markers belong in the cell tags (design card, section 5)."""
    marker = re.compile(r"^\s*#\s*(NBVAL|PYTEST_VALIDATE)_[A-Z_]+\s*$", re.MULTILINE)
    found = []
    for path in ALL_PAGES:
        nb = nbformat.read(path, as_version=4)
        found += [f"{path.name} cell {i}" for i, c in enumerate(nb.cells)
                  if c.cell_type == "code" and marker.search(c.source)]
    assert not found, f"'# NBVAL_...' comment lines (use the nbval-* cell tags instead): {found}"
