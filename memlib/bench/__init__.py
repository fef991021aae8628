"""Side-by-side measurements: ``python -m memlib.bench SUITE [--quick] [--repeats N] [--device D] [--json PATH]``.

Each suite is a module of this package with a ``run(repeats, quick) -> Report`` function and a
``DEFAULT_REPEATS``: a table to print and a JSON-ready dict, saved (atomically) to ``--out``
(default ``_build/bench/<suite>.json``) together with the machine it ran on. Variants are run
interleaved within each repeat so they share the machine's noise; quote medians and ratios.

Suites:

- ``trace``: what recording costs (``memlib.bench.trace``).
- ``recurrent``: torch.nn against memlib's fused and reference paths (``memlib.bench.recurrent``).
- ``attention``: full, fused, sparse and low-rank attention against sequence length (``memlib.bench.attention``).
- ``memory``: NTM, DNC and LSTM training speed and step time against memory size (``memlib.bench.memory``).
- ``compress``: pruning, quantization, distillation, low rank and checkpointing side by side
  (``memlib.bench.compress``).
- ``compare``: RNN, LSTM, GRU, Transformer, NTM and Linformer on long-term dependencies, training speed, memory
  footprint and interpretability (``memlib.bench.compare``); ``--sections`` runs some of them.

``--device`` (``auto``: CUDA when present, else the CPU; ``cpu``; ``cuda``) and ``--sections`` are accepted by the
suites whose ``run`` takes them (``compare``); the others say so.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import inspect
import json
import os
import platform
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import torch

SUITES = {  # name: module with run(repeats, quick) and DEFAULT_REPEATS
    "trace": "memlib.bench.trace",
    "recurrent": "memlib.bench.recurrent",
    "attention": "memlib.bench.attention",
    "memory": "memlib.bench.memory",
    "compress": "memlib.bench.compress",
    "compare": "memlib.bench.compare",
}


class Report(NamedTuple):
    """A suite's result: ``table`` (the text printed) and ``data`` (the JSON-ready dict saved).

    >>> Report._fields
    ('table', 'data')
    """
    table: str  # what a person reads
    data: dict[str, Any]  # what is saved as JSON


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch's intra-op threads set to ``n`` inside the block, restored after it."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _cpu_model() -> str | None:
    """The CPU's model name where the system says it (Linux: /proc/cpuinfo), else None."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def machine() -> dict[str, Any]:
    """What a result depends on: CPU, threads, torch version, GPU."""
    info = dict(
        platform=platform.platform(),
        processor=_cpu_model() or platform.processor() or platform.machine(),
        cpu_count=os.cpu_count(),
        torch_threads=torch.get_num_threads(),
        torch=torch.__version__,
        python=platform.python_version(),
    )
    if torch.cuda.is_available():
        info["cuda"] = torch.version.cuda
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write through a temporary file, so an interrupted run never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m memlib.bench", description=__doc__.splitlines()[0])
    parser.add_argument("suite", metavar="SUITE", choices=sorted(SUITES), help=f"one of {sorted(SUITES)}")
    parser.add_argument("--repeats", type=int, help="timed repeats per variant (default: the suite's)")
    parser.add_argument("--quick", action="store_true", help="fewer sizes: a smoke run in seconds to minutes")
    parser.add_argument("--device", help="auto (CUDA when present, else the CPU), cpu or cuda (suites that take it)")
    parser.add_argument("--sections", help="comma-separated sections to run (suites that have them)")
    parser.add_argument("--size", help="smoke, quick or full (suites that have sizes; --quick is --size quick)")
    parser.add_argument("--threads", type=int, help="torch's intra-op threads for the run (default: torch's own)")
    parser.add_argument("--json", "--out", dest="out", type=Path, help="JSON file (default _build/bench/<suite>.json)")
    args = parser.parse_args(argv)
    suite = importlib.import_module(SUITES[args.suite])
    repeats = suite.DEFAULT_REPEATS if args.repeats is None else args.repeats
    if repeats is not None and repeats < 1:
        parser.error(f"--repeats: expected a positive int, got {repeats}")
    options = {}
    accepted = inspect.signature(suite.run).parameters
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads: expected a positive int, got {args.threads}")
    for name in ("device", "sections", "size"):
        value = getattr(args, name)
        if value is None:
            continue
        if name not in accepted:
            parser.error(f"--{name}: the {args.suite} suite does not take it (the compare suite does)")
        options[name] = value.split(",") if name == "sections" else value
    if "size" in options and options["size"] not in getattr(suite, "SIZES", {}):
        parser.error(f"--size: expected one of {', '.join(suite.SIZES)}, got {options['size']}")
    if "device" in options:
        from memlib.train import device

        try:
            device(options["device"])
        except (ValueError, RuntimeError) as error:
            parser.error(f"--device: {error}")
    unknown = [name for name in options.get("sections", []) if name not in getattr(suite, "SECTIONS", ())]
    if unknown:
        parser.error(f"--sections: expected names from {', '.join(suite.SECTIONS)}, got {', '.join(unknown)}")
    with torch_threads(args.threads or torch.get_num_threads()):
        report = suite.run(repeats, args.quick, **options)
        info = machine()
    out = args.out or Path("_build/bench") / f"{args.suite}.json"
    write_json(out, {**report.data, "machine": info})
    print(report.table)
    print(f"saved {out}")
    return 0
