"""The claim boxes of the committed pages against the ledger page (book/article_checked.ipynb).

Reads committed notebooks only (nothing is executed): every "Claim check" box carries its record, no verdict
is written by hand, one claim gets one verdict wherever it is checked, and the ledger page lists exactly the
records of the pages as committed (it is regenerated after a page is re-run: `make notebooks
NB=book/article_checked.ipynb`).
"""

from __future__ import annotations

import json
import re
from collections import defaultdict

import pytest

from memlib import claims
from tests.chapters import landing
from tests.chapters.pages import ROOT, notebook_pages

LEDGER = ROOT / "book" / "article_checked.ipynb"
PAGES = [p for p in notebook_pages() if p != LEDGER]


def _html_outputs(path):
    for index, cell in enumerate(json.loads(path.read_text())["cells"]):
        for output in cell.get("outputs", []) if cell["cell_type"] == "code" else []:
            text = output.get("data", {}).get("text/html", "")
            yield index, cell, output, "".join(text) if isinstance(text, list) else text


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.stem)
def test_every_claim_box_carries_its_record(page):
    boxes = 0
    for index, _, output, html in _html_outputs(page):
        if 'class="claim-check"' not in html:
            continue
        boxes += 1
        record = output.get("metadata", {}).get(claims.METADATA_KEY)
        assert record is not None, f"{page.stem} cell {index}: a claim box without its record (drawn by hand?)"
        shown = re.search(r'data-claim-id="([^"]*)" data-verdict="([^"]*)"', html)
        assert shown and shown.groups() == (record["id"], record["verdict"]), (
            f"{page.stem} cell {index}: the box shows {shown and shown.groups()}, its record says "
            f"{(record['id'], record['verdict'])}"
        )
    assert boxes, f"{page.stem}: no claim box (every page checks the article's claims of its section)"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.stem)
def test_no_verdict_is_written_by_hand(page):
    for index, cell in enumerate(json.loads(page.read_text())["cells"]):
        source = "".join(cell["source"])
        assert cell["cell_type"] != "code" or "claim_check(" not in source, (
            f"{page.stem} cell {index}: claim_check() takes a verdict by hand; use memlib.claims.check"
        )


def test_one_claim_gets_one_verdict_wherever_it_is_checked():
    verdicts = defaultdict(set)
    for record in claims.collect(PAGES):
        verdicts[record["id"]].add((record["page"], record["verdict"]))
    split = {k: sorted(v) for k, v in verdicts.items() if len({verdict for _, verdict in v}) > 1}
    assert not split, f"one claim, several verdicts: {split}"


def test_the_ledger_lists_the_pages_records_as_committed():
    records = claims.collect(PAGES)
    assert records, "no claim records in the committed pages"
    tables = [html for _, _, _, html in _html_outputs(LEDGER) if 'class="claim-ledger"' in html]
    assert len(tables) == 1, f"expected one ledger table in {LEDGER.name}, got {len(tables)}"
    row = r'<tr data-claim-id="([^"]*)" data-verdict="([^"]*)"><td><a href="([^"]*)\.html"'
    rows = re.findall(row, tables[0])
    expected = [(r["id"], r["verdict"], r["page"]) for r in records]
    first = next(((a, b) for a, b in zip(rows, expected, strict=False) if a != b), (len(rows), len(expected)))
    assert rows == expected, (
        "the ledger is out of date with the pages (re-run it: make notebooks NB=book/article_checked.ipynb); "
        f"first difference (ledger, pages): {first}"
    )


@pytest.mark.parametrize("page", list(landing.landing_pages()), ids=lambda p: p.stem)
def test_each_landing_page_lists_its_sections_claims(page):
    text = page.read_text()
    assert text == landing.current(text, landing.landing_pages()[page]), (
        f"{page.name}: its claims block is out of date with its sections' records (python -m tests.chapters.landing)"
    )
