"""Run an explorer's JavaScript (a ``widgets/js`` file) under node and bring back what it computed.

Every explorer's page JavaScript has a Python twin (the function that computes the same caption, numbers and
arrays); the tests run the JavaScript through :func:`run_js` and compare value for value. Node is a declared test
requirement: without it these tests skip on a workstation, and fail where ``CI`` is set (``.ci/run`` installs node).

The JavaScript gets what BokehJS would give it (``tests/unit/jsparity.js`` builds the shim): each Bokeh model as a
plain object of its plain properties (one object per model, however often it appears), a ColumnDataSource's numeric
NumPy columns as typed arrays (float32 as Float32Array), constants (numbers, lists, dicts) as they are.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from bokeh.core.property.descriptors import UnsetValueError
from bokeh.model import Model
from bokeh.models import ColumnDataSource
from bokeh.util.serialization import BINARY_ARRAY_TYPES, transform_array

DRIVER = Path(__file__).with_name("jsparity.js")
TYPED = {"bool": "Uint8Array", "uint8": "Uint8Array", "int8": "Int8Array", "uint16": "Uint16Array",
         "int16": "Int16Array", "uint32": "Uint32Array", "int32": "Int32Array", "float32": "Float32Array",
         "float64": "Float64Array"}


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def node() -> str:
    """The node executable; without one, skip the test, or fail it in CI (where node is required)."""
    found = shutil.which("node")
    if found is None:
        message = "node is not installed: the explorers' JavaScript parity tests need it (apt-get install nodejs)"
        if in_ci():
            pytest.fail(f"{message}; CI is set, so this fails instead of skipping")
        pytest.skip(message)
    return found


def _array(arr: np.ndarray) -> Any:
    sent = transform_array(arr)  # the dtype Bokeh puts in the page
    if sent.dtype in BINARY_ARRAY_TYPES:
        flat = sent.ravel()  # BokehJS indexes an n-d array flat, row-major
        values = flat.astype(np.float64 if flat.dtype.kind == "f" else np.int64).tolist()
        return {"$typed": TYPED[sent.dtype.name], "values": values}
    return _value(sent.tolist(), {})


def _value(value: Any, models: dict[str, Any]) -> Any:
    """``value`` as the shim receives it; Bokeh models go into ``models`` (by id) and become references."""
    if isinstance(value, Model):
        if value.id not in models:
            if isinstance(value, ColumnDataSource):
                models[value.id] = {"data": {k: _value(v, models) for k, v in value.data.items()}}
            else:
                props = {}
                for name in sorted(value.properties()):
                    try:
                        v = getattr(value, name)
                    except UnsetValueError:  # set only by the browser (a spinner's value_throttled)
                        continue
                    if _plain(v):  # models it holds (a figure's renderers, a column's children) stay out
                        props[name] = _value(v, models)
                models[value.id] = props
        return {"$ref": value.id}
    if isinstance(value, np.ndarray):
        return _array(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): _value(v, models) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_value(v, models) for v in value]
    return value


def _plain(value: Any) -> bool:
    """A property value JavaScript reads as it is: numbers, strings, booleans, None, and lists and dicts of them."""
    if value is None or isinstance(value, bool | int | float | str | np.generic):
        return True
    if isinstance(value, list | tuple):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str | int) and _plain(v) for k, v in value.items())
    return False


def run_js(code: str, args: Mapping[str, Any], cases: Sequence[Mapping[str, Any]], read: str) -> list[Any]:
    """Run ``code`` once per case over fresh shims of ``args``; return ``read`` evaluated after each run.

    A case maps an arg's name to the value its widget takes first (``"select": "b"`` sets ``select.value``),
    ``"name.prop"`` to another property (``"checkpoint.active": [0]``), and any other name to an extra parameter of
    the code (``"tick": 3`` for a tick formatter, ``"cb_obj": {"y": 2.4}`` for an event). ``read`` is a JavaScript
    expression over ``a`` (the args after the run) and ``r`` (what the code returned).
    """
    models: dict[str, Any] = {}
    payload = {"code": code, "args": {k: _value(v, models) for k, v in args.items()},
               "cases": [{k: _value(v, models) for k, v in c.items()} for c in cases], "read": read,
               "models": models}
    done = subprocess.run([node(), str(DRIVER)], input=json.dumps(payload), capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout)
    assert len(out) == len(cases)
    return out


def run_callback(callback: Any, cases: Sequence[Mapping[str, Any]], read: str) -> list[Any]:
    """:func:`run_js` over a CustomJS (or CustomJSTickFormatter): its code and its args."""
    return run_js(callback.code, callback.args, cases, read)
