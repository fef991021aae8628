"""The comparison of checked cells can fail: it is tested on small notebooks, without executing any."""

from __future__ import annotations

import copy

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from tests.chapters.nbval_compare import compare_notebooks, sanitize_patterns

BOKEH_REF = ('<div id="0b8e6d1c-9f0e-4a57-8c2a-0d6e0a2c11f1" data-root-id="p1042"></div>'
             ' docid 4f2a9c0d1e3b4a5c6d7e8f9a0b1c2d3e')
BOKEH_NEW = ('<div id="7a1c2e33-0c44-4d55-9e66-1f7788aa99bb" data-root-id="p2077"></div>'
             ' docid 0123456789abcdef0123456789abcdef')


def _reference() -> nbformat.NotebookNode:
    cells = [
        new_markdown_cell("# A page", id="m0"),
        new_code_cell("quick = False", id="params", metadata={"tags": ["parameters"]}, execution_count=1),
        new_code_cell("print(2 + 2)", id="checked", metadata={"tags": ["nbval-check-output"]}, execution_count=2,
                      outputs=[new_output("stream", name="stdout", text="4\n")]),
        new_code_cell("show(plot)", id="bokeh", metadata={"tags": ["nbval-check-output"]}, execution_count=3,
                      outputs=[new_output("display_data", data={"text/html": BOKEH_REF})]),
        new_code_cell("print(time.time())", id="free", metadata={"tags": []}, execution_count=4,
                      outputs=[new_output("stream", name="stdout", text="1700000000.0\n")]),
        new_code_cell("print(random())", id="skipped", metadata={"tags": ["nbval-skip"]}, execution_count=5,
                      outputs=[new_output("stream", name="stdout", text="0.1\n")]),
    ]
    return new_notebook(cells=cells)


def _executed(reference) -> nbformat.NotebookNode:
    """What papermill returns: the same cells, an injected parameters cell, new Bokeh ids, new free outputs."""
    nb = copy.deepcopy(reference)
    injected = new_code_cell("quick = True", id="injected", metadata={"tags": ["injected-parameters"]},
                             execution_count=2)
    nb.cells.insert(2, injected)
    by_id = {c.get("id"): c for c in nb.cells}
    by_id["bokeh"].outputs[0].data["text/html"] = BOKEH_NEW
    by_id["free"].outputs[0].text = "1800000000.0\n"
    by_id["skipped"].outputs[0].text = "0.9\n"
    by_id["checked"].outputs = [new_output("stream", name="stdout", text="4"),  # a stream in two parts
                                new_output("stream", name="stdout", text="\n")]
    return nb


def test_the_same_outputs_pass_even_with_new_bokeh_ids():
    ref = _reference()
    assert compare_notebooks(_executed(ref), ref, sanitize_patterns()) == []


def test_a_changed_checked_output_fails_with_nbval_diff_and_cell_index():
    ref = _reference()
    executed = _executed(ref)
    next(c for c in executed.cells if c.get("id") == "checked").outputs = [
        new_output("stream", name="stdout", text="5\n")]
    mismatches = compare_notebooks(executed, ref, sanitize_patterns())
    assert [(m.index, m.code_index, m.cell_id) for m in mismatches] == [(2, 1, "checked")]
    text = mismatches[0].describe()
    assert "cell 2 (nbval Cell 1, id checked)" in text
    assert "mismatch 'stdout'" in text and "4\n" in text and "5\n" in text  # nbval's report, both sides


def test_a_changed_bokeh_output_fails_beyond_its_ids():
    ref = _reference()
    executed = _executed(ref)
    out = next(c for c in executed.cells if c.get("id") == "bokeh").outputs[0]
    out.data["text/html"] = BOKEH_NEW.replace("<div", "<span")
    assert [m.cell_id for m in compare_notebooks(executed, ref, sanitize_patterns())] == ["bokeh"]


def test_without_the_sanitize_file_bokeh_ids_differ():
    ref = _reference()
    assert [m.cell_id for m in compare_notebooks(_executed(ref), ref, patterns={})] == ["bokeh"]


def test_a_missing_or_extra_output_fails():
    ref = _reference()
    executed = _executed(ref)
    cell = next(c for c in executed.cells if c.get("id") == "checked")
    cell.outputs.append(new_output("execute_result", data={"text/plain": "4"}, execution_count=3))
    mismatches = compare_notebooks(executed, ref, sanitize_patterns())
    assert [m.cell_id for m in mismatches] == ["checked"]
    assert "Unexpected output fields" in mismatches[0].diff
