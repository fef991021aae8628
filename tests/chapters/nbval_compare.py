"""nbval's output comparison applied to a notebook that papermill has already executed.

`pytest --nbval-lax` would execute every page a second time only to compare the cells marked for
checking. Here papermill executes the page once and nbval's own code compares: which cells are
checked (nbval's tags and comment markers, read by `find_metadata_tags` / `find_comment_markers`, in
lax mode), how outputs are merged (`coalesce_streams`), sanitized (the regexes of a
`--nbval-sanitize-with` file, read by `get_sanitize_patterns`) and compared and how a difference is
printed (`IPyNbCell.compare_outputs`, `sanitize`, `format_output_compare`, bound on a small class
that provides the attributes those methods read).
"""

from __future__ import annotations

import copy
from collections import OrderedDict, defaultdict
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from nbval.plugin import (
    IPyNbCell,
    bcolors,
    coalesce_streams,
    find_comment_markers,
    find_metadata_tags,
    get_sanitize_patterns,
    nocolors,
)

SANITIZE_FILE = Path(__file__).resolve().parents[1] / "nbval_sanitize.cfg"

# nbval's default `skip_compare` (IPyNbFile.__init__ in nbval 0.11, without --nbdime): output keys and
# MIME types never compared. Images are skipped because their bytes vary with library versions.
SKIP_COMPARE = (
    "metadata",
    "traceback",
    "prompt_number",
    "output_type",
    "name",
    "execution_count",
    "application/vnd.jupyter.widget-view+json",  # model ids are random
    "image/png",
    "image/jpeg",
)


def sanitize_patterns(path: Path = SANITIZE_FILE) -> OrderedDict:
    """The (regex -> replacement) pairs of a sanitize file, as nbval's --nbval-sanitize-with reads them."""
    return OrderedDict(get_sanitize_patterns(Path(path).read_text()))


def cell_options(cell) -> defaultdict:
    """nbval's options for one code cell in lax mode (`--nbval-lax`): checked only when marked.

    Tags (`nbval-check-output`, `nbval-ignore-output`, `nbval-skip`, `nbval-raises-exception`) and,
    as nbval also accepts them, `# NBVAL_...` comment lines; comments win where both are given.
    """
    options = defaultdict(bool, find_metadata_tags(cell.get("metadata", {})))
    options.update(dict(find_comment_markers(cell.get("source", ""))))
    options.setdefault("check", False)  # lax: unmarked cells are executed, not compared
    return options


class _Comparer:
    """The attributes nbval's IPyNbCell comparison methods read, without a pytest item or a kernel."""

    compare_outputs = IPyNbCell.compare_outputs
    sanitize = IPyNbCell.sanitize
    format_output_compare = IPyNbCell.format_output_compare

    def __init__(self, patterns: OrderedDict, config=None, colors=nocolors):
        self.parent = SimpleNamespace(skip_compare=SKIP_COMPARE, sanitize_patterns=patterns)
        self.colors = colors
        self.comparison_traceback: list[str] = []
        # format_output_compare asks pytest for its assertion diff; without a pytest config it falls
        # back to nbval's own "<<<< reference / ==== test / >>>>" listing.
        self.config = config
        self.ihook = config.hook if config is not None else SimpleNamespace(pytest_assertrepr_compare=lambda **_: [])


@dataclass
class Mismatch:
    """A checked cell whose new outputs differ from the committed ones."""

    index: int  # position among all cells of the committed notebook
    code_index: int  # nbval's "Cell N": position among the code cells
    cell_id: str | None
    source: str
    diff: str

    def describe(self) -> str:
        first = self.source.splitlines()[0] if self.source.strip() else "(empty)"
        return (f"cell {self.index} (nbval Cell {self.code_index}, id {self.cell_id}): {first}\n"
                f"{self.diff}")


def _without_injected(cells):
    return [c for c in cells if "injected-parameters" not in c.get("metadata", {}).get("tags", [])]


def compare_notebooks(executed, reference, patterns: OrderedDict | None = None, config=None,
                      colors=nocolors) -> list[Mismatch]:
    """Compare the checked cells of `executed` (papermill's output) against the committed `reference`.

    Returns one Mismatch per differing checked cell (empty when all agree). The cell papermill
    injects (tagged `injected-parameters`) is left out before the cells are paired by position;
    paired cells must have the same id.
    """
    patterns = sanitize_patterns() if patterns is None else patterns
    new_cells = _without_injected(executed.cells)
    old_cells = reference.cells
    if len(new_cells) != len(old_cells):
        raise ValueError(f"executed notebook has {len(new_cells)} cells besides papermill's, the committed one "
                         f"{len(old_cells)}")
    mismatches = []
    code_index = -1
    for index, (new, old) in enumerate(zip(new_cells, old_cells, strict=True)):
        if old.cell_type != "code":
            continue
        code_index += 1
        if new.get("id") and old.get("id") and new.id != old.id:
            raise ValueError(f"cell {index}: executed cell id {new.id!r} is not the committed {old.id!r}")
        options = cell_options(old)
        if options["skip"] or not options["check"]:
            continue
        if old.get("execution_count") is None:  # nbval: an unrun reference cell is not compared
            if old.get("outputs"):
                raise ValueError(f"cell {index}: unrun reference cell has outputs")
            continue
        comparer = _Comparer(patterns, config=config, colors=colors)
        test = coalesce_streams(copy.deepcopy(new.get("outputs", [])))
        ref = coalesce_streams(copy.deepcopy(old.get("outputs", [])))
        if not comparer.compare_outputs(test, ref):
            mismatches.append(Mismatch(index, code_index, old.get("id"), old.source,
                                       "\n".join(comparer.comparison_traceback)))
    return mismatches


def colors_for(config) -> type:
    """nbval's colour codes when pytest writes to a terminal, plain text otherwise."""
    try:
        return bcolors if config.get_terminal_writer().hasmarkup else nocolors
    except AttributeError:  # a config without a terminal writer
        return nocolors
