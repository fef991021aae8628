"""How far each page's quick-mode assertions are from failing, measured over seeds and instruction sets.

Usage:
    python -m tests.chapters.margins sweep [--seeds 0 1 2 3 4] [--restricted] [--jobs 2] [PAGE ...]
    python -m tests.chapters.margins report      # writes tests/chapters/margins.json and MARGINS.md

``sweep`` executes each page in quick mode (papermill, ``quick=True``, ``seed=s``) with every comparison inside an
``assert`` recorded: an IPython AST transformer rewrites ``a > b`` in an assert's test into a call that records
``a``, ``b`` and the margin ``a - b`` (``b - a`` for ``<``) and returns the comparison's value, so loops,
``all(...)`` and ``and`` chains are measured element by element and the assert behaves as written. ``--restricted``
runs with ``ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=default`` (a CPU without AVX-512, ATen without its AVX2
kernels). Each run's records go to ``_build/margins/<page>.<setting>.json``.

``report`` takes, for every comparison, the worst margin over all runs (the smallest; negative: it failed in some
run) and its margin relative to the threshold, and writes them to ``margins.json`` (read by
``test_margins.py``) and a table, MARGINS.md, that lists each threshold with its measured distribution.
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat

from tests.chapters.pages import ROOT, notebook_pages

RUNS = ROOT / "_build" / "margins"
SUMMARY = Path(__file__).with_name("margins.json")
TABLE = Path(__file__).with_name("MARGINS.md")
RESTRICTED = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "default"}
_OPS = {ast.Gt: ">", ast.GtE: ">=", ast.Lt: "<", ast.LtE: "<="}
_RECORDER = "__assert_margin__"


# ---------------------------------------------------------------------------------------------------------------
# Inside the kernel: the rewrite and the recorder.
# ---------------------------------------------------------------------------------------------------------------


class _RewriteAsserts(ast.NodeTransformer):
    """Each ordered comparison inside an assert's test becomes ``__assert_margin__(site, left, op, right)``."""

    def visit_Assert(self, node: ast.Assert) -> ast.Assert:
        statement = ast.unparse(node.test)
        node.test = _Comparisons(statement).visit(node.test)
        return node


class _Comparisons(ast.NodeTransformer):
    def __init__(self, statement: str) -> None:
        self.statement = statement

    def visit_Compare(self, node: ast.Compare) -> ast.AST:
        self.generic_visit(node)
        if len(node.ops) != 1 or type(node.ops[0]) not in _OPS:
            return node
        site = ast.Constant(json.dumps([self.statement, ast.unparse(node)]))
        call = ast.Call(ast.Name(_RECORDER, ast.Load()),
                        [site, node.left, ast.Constant(_OPS[type(node.ops[0])]), node.comparators[0]], [])
        return ast.copy_location(call, node)


def comparisons_in(page: Path) -> set[tuple[str, str]]:
    """(assert, comparison) of every ordered comparison inside an assert in ``page``'s code, as the rewrite
    names them, whether or not quick mode reaches it."""
    found = set()
    for cell in nbformat.read(page, as_version=4).cells:
        if cell.cell_type != "code":
            continue
        source = "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!")))
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Assert):
                statement = ast.unparse(node.test)
                found |= {(statement, ast.unparse(c)) for c in ast.walk(node.test)
                          if isinstance(c, ast.Compare) and len(c.ops) == 1 and type(c.ops[0]) in _OPS}
    return found


def _install(path: str) -> None:
    """Runs in the page's kernel (first cell of the copy): register the rewrite and the recorder."""
    import atexit
    import builtins

    records: dict[str, list[float]] = {}

    def record(site, left, op, right):
        result = {">": left > right, ">=": left >= right, "<": left < right, "<=": left <= right}[op]
        try:
            margin = float(left - right) if op in (">", ">=") else float(right - left)
            left, right = float(left), float(right)
        except (TypeError, ValueError):  # not numbers (arrays, strings): the assert runs, unmeasured
            return result
        if math.isfinite(margin):
            relative = margin / abs(right) if right != 0 else margin
            worst = records.setdefault(site, [math.inf, math.inf, left, right])
            if margin < worst[0]:
                worst[0], worst[2], worst[3] = margin, left, right
            worst[1] = min(worst[1], relative)
        return result

    def dump():
        Path(path).write_text(json.dumps(records))

    builtins.__assert_margin__ = record
    get_ipython().ast_transformers.append(_RewriteAsserts())  # noqa: F821 (IPython's global)
    atexit.register(dump)
    builtins.__assert_margin_dump__ = dump


_SETUP = """# margins sweep: record every comparison in an assert (tests/chapters/margins.py)
import sys
sys.path.insert(0, {root!r})
from tests.chapters.margins import _install
_install({path!r})
"""
_DUMP = "__assert_margin_dump__()"


def run_page(page: Path, seed: int, restricted: bool) -> dict:
    """Execute ``page`` in quick mode with ``seed`` and return its records and status."""
    setting = f"seed{seed}" + ("-restricted" if restricted else "")
    out = RUNS / f"{page.stem}.{setting}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    nb = nbformat.read(page, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell(_SETUP.format(root=str(ROOT), path=str(out) + ".part")))
    nb.cells.append(nbformat.v4.new_code_cell(_DUMP))
    # Pages set torch's threads themselves (2, the book's budget); passive OpenMP waiting keeps two pages sharing
    # two cores from spinning against each other (as `make` sets it).
    env = {**os.environ, **(RESTRICTED if restricted else {}), "OMP_WAIT_POLICY": "PASSIVE", "BOOK_QUICK": "1"}
    env.pop("BOOK_LIVE", None)
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / page.name, Path(tmp) / ("out-" + page.name)
        nbformat.write(nb, str(src))
        cmd = [sys.executable, "-m", "papermill", str(src), str(dst), "-p", "quick", "True", "-p", "live", "False",
               "-p", "seed", str(seed), "--cwd", str(page.parent), "--kernel", "python3", "--no-progress-bar"]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    part = Path(str(out) + ".part")
    records = json.loads(part.read_text()) if part.exists() else {}
    part.unlink(missing_ok=True)
    error = None if done.returncode == 0 else done.stderr.strip().splitlines()[-1:] or ["failed"]
    result = {"page": page.stem, "seed": seed, "restricted": restricted, "error": error, "records": records}
    out.write_text(json.dumps(result))
    return result


def sweep(pages: list[Path], seeds: list[int], restricted: bool, jobs: int, only_restricted: bool = False) -> None:
    """Each page with each seed, then (``restricted``) with the first seed under :data:`RESTRICTED`."""
    settings = [] if only_restricted else [(s, False) for s in seeds]
    settings += [(seeds[0], True)] if restricted or only_restricted else []
    units = [(p, s, r) for s, r in settings for p in pages]
    with ThreadPoolExecutor(jobs) as pool:
        for result in pool.map(lambda u: run_page(*u), units):
            state = "ok" if result["error"] is None else f"FAILED: {result['error'][0][:160]}"
            print(f"{result['page']} seed {result['seed']}{' restricted' if result['restricted'] else ''}: "
                  f"{len(result['records'])} comparisons, {state}", flush=True)


# ---------------------------------------------------------------------------------------------------------------
# The report.
# ---------------------------------------------------------------------------------------------------------------


def report(pages: set[str] | None = None) -> dict:
    """Summarise the local sweep runs into margins.json and MARGINS.md.

    With ``pages``, only those pages' entries are replaced (from the local runs) and the committed entries of
    every other page are kept: a sweep of one page on this machine does not drop the rest.
    """
    sites: dict[tuple[str, str, str], dict] = {}
    runs: dict[str, list[str]] = {}
    for path in sorted(RUNS.glob("*.json")):
        run = json.loads(path.read_text())
        if pages is not None and run["page"] not in pages:
            continue
        setting = f"seed {run['seed']}" + (" restricted" if run["restricted"] else "")
        runs.setdefault(run["page"], []).append(setting + (" FAILED" if run["error"] else ""))
        for key, (margin, relative, left, right) in run["records"].items():
            statement, comparison = json.loads(key)
            site = sites.setdefault((run["page"], statement, comparison), {"margins": [], "relative": [],
                                                                          "values": [], "threshold": right})
            site["margins"].append(margin)
            site["relative"].append(relative)
            site["values"].append(left)
    summary = {"runs": runs, "sites": [], "not_in_quick_mode": []}
    for (page, statement, comparison), s in sorted(sites.items()):
        summary["sites"].append({
            "page": page, "assert": statement, "comparison": comparison, "runs": len(s["margins"]),
            "worst_margin": min(s["margins"]), "worst_relative": min(s["relative"]),
            "median_value": statistics.median(s["values"]), "min_value": min(s["values"]),
            "max_value": max(s["values"]), "threshold": s["threshold"],
        })
    # what the pages assert that no quick-mode run reached (branches for full mode only), so that the test can
    # tell a comparison left out of quick mode from one added since the sweep
    reached = {(x["page"], x["assert"], x["comparison"]) for x in summary["sites"]}
    paths = {p.stem: p for p in notebook_pages()}
    summary["not_in_quick_mode"] = [
        {"page": page, "assert": a, "comparison": c}
        for page in sorted(runs) for a, c in sorted(comparisons_in(paths[page])) if (page, a, c) not in reached
    ]
    if pages is not None:  # keep the committed entries of the pages not swept here
        missing = sorted(pages - set(runs))
        if missing:
            raise SystemExit(f"margins report: expected local sweep runs of {missing} in {RUNS}, found none")
        old = json.loads(SUMMARY.read_text())
        runs = {**{p: r for p, r in old["runs"].items() if p not in pages}, **runs}
        summary["runs"] = dict(sorted(runs.items()))
        for key in ("sites", "not_in_quick_mode"):
            summary[key] = sorted([x for x in old[key] if x["page"] not in pages] + summary[key],
                                  key=lambda x: (x["page"], x["assert"], x["comparison"]))
    SUMMARY.write_text(json.dumps(summary, indent=1) + "\n")
    lines = [
        "# Margins of the pages' quick-mode assertions",
        "",
        "Made by `python -m tests.chapters.margins sweep --seeds 0 1 2 3 4 --restricted` then `report`: each page",
        "executed in quick mode with seeds 0-4 and once (seed 0) with `ONEDNN_MAX_CPU_ISA=AVX2",
        "ATEN_CPU_CAPABILITY=default`. For each comparison inside an `assert`: the left side's range over the runs",
        "(the worst element where the comparison sits in a loop), the threshold, and the worst margin (absolute, and",
        "relative to the threshold). `test_margins.py` requires a worst margin of at least 5% of the threshold, or",
        "a positive one at least three times the range of the measured values.",
        "",
        f"Machine of the runs: {_machine()}.",
        "",
        "Runs per page: " + "; ".join(f"{p}: {len(r)}" + (f" ({', '.join(x for x in r if 'FAILED' in x)})"
                                                       if any("FAILED" in x for x in r) else "")
                                      for p, r in sorted(runs.items())),
        "",
        "| page | comparison | runs | measured (min / median / max) | worst margin | relative |",
        "|---|---|---:|---|---:|---:|",
    ]
    for s in summary["sites"]:
        lines.append(f"| {s['page']} | `{s['comparison'].replace('|', '/')}` | {s['runs']} | "
                     f"{_fmt(s['min_value'])} / {_fmt(s['median_value'])} / {_fmt(s['max_value'])} | "
                     f"{_fmt(s['worst_margin'])} | {100 * s['worst_relative']:.0f}% |")
    TABLE.write_text("\n".join(lines) + "\n")
    return summary


def _machine() -> str:
    from memlib.bench import machine

    m = machine()
    return f"{m['processor']}, {m['cpu_count']} CPUs, torch {m['torch']}, Python {m['python']}"


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chapters.margins")
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("sweep")
    s.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    s.add_argument("--restricted", action="store_true", help="also run the first seed under RESTRICTED")
    s.add_argument("--only-restricted", action="store_true", help="only the first seed under RESTRICTED")
    s.add_argument("--jobs", type=int, default=2)
    s.add_argument("pages", nargs="*")
    r = sub.add_parser("report")
    r.add_argument("--pages", nargs="+", help="replace only these pages' entries; keep the committed ones of the rest")
    args = parser.parse_args(argv)
    if args.command == "report":
        summary = report(set(args.pages) if args.pages else None)
        weak = [x for x in summary["sites"] if x["worst_relative"] < 0.05
                and not 0 < x["worst_margin"] >= 3 * (x["max_value"] - x["min_value"])]
        print(f"{len(summary['sites'])} comparisons; {len(weak)} with a worst margin under 5% and under 3 ranges:")
        for x in weak:
            print(f"  {x['page']}: {x['comparison']}: worst margin {x['worst_margin']:.4g} "
                  f"({100 * x['worst_relative']:.1f}%)")
        return 0
    wanted = set(args.pages)
    pages = [p for p in notebook_pages() if not wanted or p.stem in wanted]
    sweep(pages, args.seeds, args.restricted, args.jobs, args.only_restricted)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
