"""widgets/js: the explorers' JavaScript ships with the package, is used, parses, and takes its inputs through args."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

from jsparity import run_js

from widgets.base import load_js

ROOT = Path(__file__).resolve().parents[2]
JS = sorted((ROOT / "widgets" / "js").glob("*.js"))
WIDGETS = "\n".join(p.read_text() for p in (ROOT / "widgets").glob("*.py"))


def test_every_js_file_ships_with_the_package():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "js/*.js" in config["tool"]["setuptools"]["package-data"]["widgets"]
    assert JS, "no widgets/js/*.js found"
    for path in JS:
        assert load_js(path.stem) == path.read_text(encoding="utf-8")


def test_every_js_file_is_used_by_an_explorer_and_no_js_is_templated_in_python():
    for path in JS:
        assert f'"{path.stem}"' in WIDGETS, f"{path.name} is loaded by no explorer"
    # every code= of a CustomJS or a tick formatter reads a file; no %(name)s is left to format JavaScript with
    assert re.findall(r"\bcode=(?!load_js\()", WIDGETS) == []
    assert "%(" not in WIDGETS
    for path in JS:
        assert "%(" not in path.read_text() and "%%" not in path.read_text(), path.name


def test_every_js_file_parses_as_a_callback_body():
    bodies = {path.stem: load_js(path.stem) for path in JS}
    bodies["addressing_pipeline"] = load_js("addressing", "addressing_pipeline")  # it calls addressing.js
    code = "return Object.entries(bodies).map(([name, body]) => { new Function(body); return name; });"
    [parsed] = run_js(code, {"bodies": bodies}, [{}], "r")
    assert sorted(parsed) == sorted(bodies), json.dumps(parsed)
