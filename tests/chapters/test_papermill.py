"""Every notebook page of the book, executed by papermill in quick mode: one test per page."""

from __future__ import annotations

import time

import nbformat
import papermill
import pytest

from tests.chapters.pages import ROOT, notebook_pages

PAGES = notebook_pages()


@pytest.mark.parametrize("path", PAGES, ids=[p.stem for p in PAGES])
def test_page_runs_in_quick_mode(path, tmp_path):
    start = time.perf_counter()
    papermill.execute_notebook(
        str(path), str(tmp_path / path.name), parameters={"quick": True, "live": False},
        kernel_name="python3", cwd=str(path.parent), progress_bar=False,
    )
    print(f"{path.relative_to(ROOT)}: {time.perf_counter() - start:.1f} s in quick mode")


def test_every_page_has_the_parameters_cell():
    for path in PAGES:
        nb = nbformat.read(path, as_version=4)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, f"{path.name}: expected one cell tagged 'parameters', got {len(tagged)}"
        for name in ("quick", "seed", "device", "live"):
            assert f"{name} =" in tagged[0].source, f"{path.name}: the parameters cell does not set {name!r}"
