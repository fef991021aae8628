"""``python -m memlib.bench SUITE ...``: every suite as :func:`memlib.bench.main` runs it, except ``compare``, whose
cells are spread over workers by :mod:`memlib.execute`.

``compare`` is split into units that share nothing: per model, its two ladders and its interpretability score
(the ladder's adding model at ``interpret_length`` is scored in the same unit); per model, its memory
footprint; and the training-speed section, whose models are timed interleaved at each length, as one exclusive
unit (it runs after the others, alone on its worker). Every unit calls :func:`memlib.bench.compare.measure` for
its models and sections with the run's seed, so its records are those of a serial run;
:func:`merge_compare` puts the parts together. Times are measurements: they differ between any two runs.

``--workers N`` (1: serial, in this process), ``--scheduler ADDRESS`` (or ``MEMLIB_SCHEDULER``: an existing
cluster), ``--results DIR`` (saved units, resumed on a rerun) and ``--fresh`` (run every unit again) choose
where and how; the other options are those of the serial command. ``compare`` takes this path when one of them
is given (``make bench`` gives ``--results``), else it runs as :func:`memlib.bench.main` runs it, as do the other
suites (they time their variants interleaved on one machine).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

from memlib import bench
from memlib.bench import compare
from memlib.execute import GIB, SCHEDULER_ENV, Executor, Unit, source_fingerprint

LADDER_MEMORY = 3 * GIB  # the Transformer's attention at T = 1000, batch 32, with its backward pass
FOOTPRINT_MEMORY = int(compare.MEMORY_LIMIT_GIB * GIB) + GIB  # a cell's projected cap, and the process
# The models by the time their ladders took (smoke and quick sizes): started first, so that a short one ends the run.
LONGEST_FIRST = ("ntm", "transformer", "linformer", "lstm", "gru", "rnn")


def measure_part(size: str | compare.Size, models: list[str], sections: list[str], repeats: int | None,
                 device: str, seed: int) -> dict:
    """One unit of ``compare``: :func:`~memlib.bench.compare.measure` of some models and sections, logging to stdout."""
    # numpy warns when it first meets the flushed denormals (compare.flushed_denormals): nothing is wrong
    warnings.filterwarnings("ignore", "The value of the smallest subnormal")
    return compare.measure(size, models=models, sections=sections, repeats=repeats, device=device, seed=seed,
                           log=print)


def compare_units(
    size: str | compare.Size = "full",
    *,
    models: tuple[str, ...] = compare.MODELS,
    sections: tuple[str, ...] = compare.SECTIONS,
    repeats: int | None = None,
    device: str = "auto",
    seed: int = 0,
    threads: int | None = None,
) -> list[Unit]:
    """The units of one ``compare`` run (see the module), each with its configuration and needs.

    >>> [u.key for u in compare_units("smoke", models=("rnn", "ntm"), sections=("long_term", "speed"), device="cpu")]
    ['long_term-ntm', 'long_term-rnn', 'speed']
    """
    from memlib.train import device as pick_device

    gpu = pick_device(device).type == "cuda"
    config = dict(
        suite="compare",
        size=size if isinstance(size, str) else size._asdict(),
        repeats=repeats,
        device=device,
        seed=seed,
        threads=threads,
        code=source_fingerprint(Path(compare.__file__).parents[1]),
    )
    models = [m for m in LONGEST_FIRST if m in models]
    trained = [s for s in ("long_term", "interpretability") if s in sections]
    units = []

    def unit(key: str, part_models: list[str], part_sections: list[str], memory: int, exclusive: bool = False):
        args = (size, part_models, part_sections, repeats, device, seed)
        cfg = dict(config, models=part_models, sections=part_sections)
        # A trained ladder's records depend on the thread count (it orders the float sums): with all of its worker's
        # threads, a serial run (2 threads here) and 2 workers (1 each) learned different ladders from the same seeds.
        # So every unit but the timing one runs on `threads`, by default 1, wherever it runs; timing takes the cores.
        unit_threads = threads if threads is not None or exclusive else 1
        units.append(Unit(key, measure_part, args, cfg, unit_threads, memory, gpu, exclusive))

    for m in models:
        if trained:
            unit(f"{trained[0]}-{m}", [m], trained, LADDER_MEMORY)
    if "memory" in sections:
        for m in models:
            unit(f"memory-{m}", [m], ["memory"], FOOTPRINT_MEMORY)
    if "speed" in sections:
        unit("speed", models, ["speed"], LADDER_MEMORY, exclusive=True)
    return units


def _union(a: object, b: object, where: str) -> object:
    """Two parts' results as one: dicts joined key by key; anything else must be equal in both."""
    if isinstance(a, dict) and isinstance(b, dict):
        return {k: _union(a[k], b[k], f"{where}.{k}") if k in a and k in b else a.get(k, b.get(k))
                for k in [*a, *(k for k in b if k not in a)]}
    if a != b:
        raise ValueError(f"merge_compare: expected the parts to agree at {where}, got {a!r} and {b!r}")
    return a


def merge_compare(parts: list[dict], seconds: float) -> dict:
    """The results of a serial :func:`~memlib.bench.compare.measure` from those of its units (``parts``, JSON-ready
    dicts), the run's ``seconds`` as its total time; skipped cells in the order a serial run meets them."""
    if not parts:
        raise ValueError("merge_compare: expected the results of at least one unit, got none")
    models = [m for m in compare.MODELS if any(m in p["models"] for p in parts)]
    data = dict(suite="compare", size=parts[0]["size"], settings=parts[0]["settings"], device=parts[0]["device"],
                torch=parts[0]["torch"], models=models, params={})
    for section in ("params", *compare.SECTIONS):
        for p in parts:
            if section in p:
                data[section] = _union(data[section], p[section], section) if section in data else p[section]
    data["params"] = {m: data["params"][m] for m in models}
    tasks, sections = list(compare.TASKS), list(compare.SECTIONS)

    def order(skip: dict) -> tuple:  # long_term: task by task, then model; speed keeps its own order
        task = tasks.index(skip["at"].split()[0]) if skip["section"] == "long_term" else 0
        model = 0 if skip["section"] == "speed" else models.index(skip["model"])
        return sections.index(skip["section"]), task, model

    data["skipped"] = sorted((s for p in parts for s in p["skipped"]), key=order)
    data["seconds"] = seconds
    data["summary"] = compare.summary(data)
    return data


def _compare(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m memlib.bench compare",
                                     description="compare, its cells spread over workers (memlib.execute)")
    parser.add_argument("--size", choices=list(compare.SIZES), help="smoke, quick or full (default full)")
    parser.add_argument("--quick", action="store_true", help="--size quick")
    parser.add_argument("--sections", help=f"comma-separated, from {', '.join(compare.SECTIONS)}")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present, else the CPU), cpu or cuda")
    parser.add_argument("--repeats", type=int, help="timed repeats of a training step (default: the size's)")
    parser.add_argument("--threads", type=int,
                        help="torch threads per unit (default: 1, wherever a unit runs, so that serial and parallel "
                             "runs learn the same ladders; the timing unit takes all of its worker's)")
    parser.add_argument("--seed", type=int, default=0, help="the run's seed (default 0)")
    parser.add_argument("--json", "--out", dest="out", type=Path, help="JSON file (default _build/bench/compare.json)")
    parser.add_argument("--workers", type=int, help="local workers (default: as many as the machine holds; 1: serial)")
    parser.add_argument("--scheduler", help="address of an existing Dask scheduler (default: $MEMLIB_SCHEDULER)")
    parser.add_argument("--results", type=Path, help="saved units, resumed by a rerun (default: none saved)")
    parser.add_argument("--fresh", action="store_true", help="run every unit again, saved or not")
    args = parser.parse_args(argv)
    size = args.size or ("quick" if args.quick else "full")
    sections = compare.SECTIONS if args.sections is None else tuple(args.sections.split(","))
    unknown = [s for s in sections if s not in compare.SECTIONS]
    if unknown:
        parser.error(f"--sections: expected names from {', '.join(compare.SECTIONS)}, got {', '.join(unknown)}")
    for name in ("repeats", "threads", "workers"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name}: expected a positive int, got {value}")
    try:
        units = compare_units(size, sections=sections, repeats=args.repeats, device=args.device, seed=args.seed,
                              threads=args.threads)
    except (ValueError, RuntimeError) as error:
        parser.error(f"--device: {error}")
    started = time.perf_counter()
    results = args.results
    try:
        with Executor(results, workers=args.workers, scheduler=args.scheduler, fresh=args.fresh) as ex:
            records = ex.run(units)
    except ValueError as error:
        parser.error(str(error))
    failed = [r["key"] for r in records if r["status"] != "done"]
    if failed:
        saved = f"the others are saved in {results}: run the same command again to finish" if results else \
            "pass --results DIR to keep the others for a rerun"
        print(f"compare: {len(failed)} of {len(records)} units failed ({', '.join(failed)}); {saved}", file=sys.stderr)
        return 1
    resumed = sum(r["seconds"] for r in records if r["resumed"])  # measured by an earlier run
    data = merge_compare([r["value"] for r in records], time.perf_counter() - started + resumed)
    with bench.torch_threads(records[0]["threads"]):
        info = bench.machine()
    out = args.out or Path("_build/bench/compare.json")
    bench.write_json(out, {**data, "machine": info})
    print(compare.tables(data))
    print(f"saved {out}")
    return 0


EXECUTION_FLAGS = ("--workers", "--scheduler", "--results", "--fresh")


def main(argv: list[str] | None = None) -> int:
    """``compare`` through :mod:`memlib.execute` when an execution flag or ``MEMLIB_SCHEDULER`` asks for it;
    everything else through :func:`memlib.bench.main`."""
    argv = sys.argv[1:] if argv is None else argv
    flagged = any(a.split("=")[0] in EXECUTION_FLAGS for a in argv) or os.environ.get(SCHEDULER_ENV)
    if argv[:1] == ["compare"] and flagged:
        return _compare(argv[1:])
    return bench.main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
