"""Independent units of work (a page in full mode, a cell of a benchmark) spread over Dask workers.

A :class:`Unit` is one call that depends on nothing else in the run: a function of module scope, its
arguments, the ``config`` that identifies its result, and what it needs at its peak (``threads``, ``memory``
in bytes, a ``gpu``). :class:`Executor` runs a list of them and returns one record per unit, in the order
given:

- by default on a local Dask cluster sized by :func:`plan_workers`: as many single-task worker processes as
  the machine's cores and available memory hold for the largest unit (one per visible GPU for units that take
  a GPU, each pinned to its device by ``CUDA_VISIBLE_DEVICES``), each offering its share as Dask worker
  resources (``threads``, ``memory``, ``GPU``) that every unit asks for, so no worker takes more than it holds;
- with ``scheduler`` (an address such as ``tcp://host:8786``, or ``MEMLIB_SCHEDULER``) on an existing cluster,
  whose workers must offer those resources (``dask worker ADDRESS --nthreads 1 --resources
  "threads=8,memory=32e9"``);
- with one worker, serially in this process: no cluster at all.

Every unit runs the same way in all three (:func:`perform`): its torch threads and ``OMP_NUM_THREADS`` set to
its ``threads``, its printed output captured, an exception turned into a failed record (the others go on).
A unit whose result depends on the machine being otherwise idle (a timing) is ``exclusive``: it runs after
the others, alone: in this process with all of the machine's cores where the cluster is local (as in a serial
run), one at a time on an existing cluster. Each finished record is saved to ``results/<key>.json``
(atomically); a later run with the same ``results`` takes a saved record instead of running the unit again
when its ``config`` is unchanged (``fresh=True`` runs everything). Values go through JSON in every case, so a
resumed record equals a fresh one.

>>> with Executor(None, workers=1, log=None) as ex:
...     [r["value"] for r in ex.run([Unit("a", max, (1, 2)), Unit("b", sorted, ((3, 1),))])]
[2, [1, 3]]
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import socket
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from memlib.validate import check_int, fail

GIB = 2**30
#: The environment variable that names an existing scheduler when no address is given.
SCHEDULER_ENV = "MEMLIB_SCHEDULER"
_KEY = re.compile(r"[A-Za-z0-9_.=+-]+")  # a unit's key is a file name in the results directory


class Unit(NamedTuple):
    """One independent call: ``call(*args)`` returns a JSON-ready value.

    ``key`` names it (letters, digits, ``_.=+-``: its saved record is ``<results>/<key>.json``); ``config`` is
    what its result depends on (shown when it fails; a saved record is reused only when its config is equal);
    ``threads`` (None: all of its worker's), ``memory`` (peak bytes) and ``gpu`` are what it needs at its peak;
    ``exclusive`` units (timings) run after the others, alone.

    >>> Unit("page", print, config=dict(page="ch01.ipynb")).memory == GIB
    True
    """
    key: str
    call: Callable[..., Any]  # a function of module scope: it is sent to the workers by reference
    args: tuple = ()
    config: dict | None = None
    threads: int | None = 1
    memory: int = GIB
    gpu: bool = False
    exclusive: bool = False


class WorkerSpec(NamedTuple):
    """One worker of a local cluster: its share of cores and memory and its GPU (an index among the visible
    ones, or None).

    >>> WorkerSpec(2, 8 * GIB, None).resources()
    {'threads': 2, 'memory': 8589934592}
    """
    threads: int
    memory: int
    gpu: str | None

    def resources(self) -> dict[str, int]:
        """The Dask worker resources it offers."""
        out = dict(threads=self.threads, memory=self.memory)
        if self.gpu is not None:
            out["GPU"] = 1
        return out


def source_fingerprint(*paths: str | Path) -> str:
    """A short hash of the code under ``paths`` (their ``.py`` and ``.js`` files): part of a unit's ``config`` where
    its result depends on that code, so that a saved record of older code is not resumed.

    >>> len(source_fingerprint(Path(__file__).parent))
    16
    """
    digest = hashlib.sha256()
    for root in map(Path, paths):
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.suffix in (".py", ".js"))
        for path in files:
            digest.update(str(path.relative_to(root.parent)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def visible_gpus() -> list[str]:
    """The CUDA devices this process may use, as ``CUDA_VISIBLE_DEVICES`` names them (``[]`` without CUDA)."""
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    named = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return named[:count] if named else [str(i) for i in range(count)]


def available_memory() -> int:
    """Bytes of memory the system can give now (psutil's ``available``)."""
    import psutil

    return int(psutil.virtual_memory().available)


def plan_workers(
    units: Sequence[Unit],
    workers: int | None = None,
    *,
    cpus: int | None = None,
    memory: int | None = None,
    gpus: Sequence[str] | None = None,
) -> list[WorkerSpec]:
    """The local workers for ``units``: as many as the machine holds for the largest unit (and no more than the
    units that can run side by side), or ``workers`` of them; each with an equal share of ``cpus`` and
    ``memory`` (default: this machine's cores and available memory). Units that take a GPU get one worker per
    GPU in ``gpus`` (default: :func:`visible_gpus`), pinned to it.

    >>> [w.threads for w in plan_workers([Unit(str(i), print) for i in range(5)], cpus=4, memory=64 * GIB)]
    [1, 1, 1, 1]
    >>> plan_workers([Unit("a", print, gpu=True)] * 3, cpus=8, memory=64 * GIB, gpus=["2", "3"])[1]
    WorkerSpec(threads=4, memory=34359738368, gpu='3')
    """
    if not units:
        raise ValueError("plan_workers: expected at least one unit, got none")
    cpus = (os.cpu_count() or 1) if cpus is None else check_int("plan_workers", "cpus", cpus, low=1)
    memory = available_memory() if memory is None else check_int("plan_workers", "memory", memory, low=1)
    threads = max(u.threads or 1 for u in units)
    peak = max(u.memory for u in units)
    if threads > cpus:
        fail("plan_workers", f"units that fit this machine's {cpus} cores", f"a unit that needs {threads} threads")
    # A unit's memory is an estimate: one worker is always tried, however little memory is free.
    fit = min(cpus // threads, max(1, memory // peak))
    parallel = max(1, sum(not u.exclusive for u in units))
    if any(u.gpu for u in units):
        gpus = visible_gpus() if gpus is None else list(gpus)
        if not gpus:
            fail("plan_workers", "a visible CUDA device for the units that take a GPU", "none")
        fit = min(fit, len(gpus))
    count = min(fit, parallel) if workers is None else check_int("plan_workers", "workers", workers, low=1)
    if count > fit:
        fail("plan_workers", f"at most {fit} workers (each unit needs up to {threads} threads and "
             f"{peak / GIB:.1f} GiB; {cpus} cores, {memory / GIB:.1f} GiB available"
             + (f", {len(gpus)} GPUs" if any(u.gpu for u in units) else "") + ")", f"{count}")
    pinned = gpus if any(u.gpu for u in units) else [None] * count
    return [WorkerSpec(cpus // count, memory // count, pinned[i]) for i in range(count)]


@contextlib.contextmanager
def unit_threads(threads: int) -> Iterator[None]:
    """torch's intra-op threads and ``OMP_NUM_THREADS`` (read by the processes a unit starts, such as a
    notebook's kernel) set to ``threads`` inside the block, restored after it."""
    import torch

    before, env = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
        if env is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = env


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value))


def perform(unit: Unit, threads: int) -> dict:
    """Run one unit with ``threads`` threads, its output captured: its record (``status`` ``"done"`` with its
    ``value``, or ``"failed"`` with the ``error``), the same wherever it runs.

    >>> r = perform(Unit("bad", int, ("x",), dict(n=1)), 1)
    >>> r["status"], r["config"], r["error"].splitlines()[-1]
    ('failed', {'n': 1}, "ValueError: invalid literal for int() with base 10: 'x'")
    """
    output = io.StringIO()
    start = time.perf_counter()
    value, error = None, None
    try:
        with unit_threads(threads), contextlib.redirect_stdout(output):
            value = _jsonable(unit.call(*unit.args))
    except Exception:  # a unit's failure is its record; the run goes on
        error = traceback.format_exc()
    return dict(
        key=unit.key,
        config=_jsonable(unit.config),
        status="done" if error is None else "failed",
        value=value,
        error=error,
        output=output.getvalue(),
        seconds=time.perf_counter() - start,
        threads=threads,
        worker=f"{socket.gethostname()}:{os.getpid()}",
        gpu=os.environ.get("CUDA_VISIBLE_DEVICES"),
    )


def _check_units(units: Sequence[Unit]) -> None:
    seen = set()
    for unit in units:
        if not isinstance(unit, Unit):
            fail("Executor.run", "a list of Unit", type(unit).__name__, TypeError)
        if not isinstance(unit.key, str) or not _KEY.fullmatch(unit.key):
            fail("Executor.run", "a unit key of letters, digits and _.=+-", repr(unit.key))
        if unit.key in seen:
            fail("Executor.run", "unique unit keys", f"{unit.key!r} twice")
        seen.add(unit.key)
        if unit.threads is not None:
            check_int("Executor.run", f"threads of {unit.key}", unit.threads, low=1)
        check_int("Executor.run", f"memory of {unit.key}", unit.memory, low=1)


class Executor:
    """Runs lists of units (:meth:`run`) serially, on a local Dask cluster, or on an existing one (see the module).

    ``results``: the directory of saved records (None: nothing saved or resumed); ``workers``: how many local
    workers (default: :func:`plan_workers`' choice; 1: serial, no cluster); ``scheduler``: an existing cluster's
    address (default: ``MEMLIB_SCHEDULER``, if set); ``gpus``: the devices local workers are pinned to for units
    that take a GPU (default: :func:`visible_gpus`); ``log``: where progress goes (None: nowhere); ``fresh``:
    run every unit, saved or not; ``timeout``: seconds a run may take before the units still out are failed.
    The local cluster starts at the first :meth:`run` and stays up until :meth:`close` (or the ``with`` block's end).
    """

    def __init__(
        self,
        results: str | Path | None,
        *,
        workers: int | None = None,
        scheduler: str | None = None,
        gpus: Sequence[str] | None = None,
        log: Callable[[str], None] | None = print,
        fresh: bool = False,
        timeout: float | None = None,
    ):
        if workers is not None:
            check_int("Executor", "workers", workers, low=1)
        self.results = None if results is None else Path(results)
        self.workers = workers
        self.scheduler = scheduler if scheduler is not None else os.environ.get(SCHEDULER_ENV) or None
        if self.scheduler is not None and workers is not None:
            fail("Executor", "either workers (a local cluster) or a scheduler address",
                 f"workers={workers} and scheduler={self.scheduler!r}")
        self.gpus = None if gpus is None else [str(g) for g in gpus]
        self.log = log or (lambda _: None)
        self.fresh = fresh
        self.timeout = timeout
        self._cluster = None
        self._client = None
        self._threads: int | None = None  # threads of a unit that takes all of its worker's
        self._cores: int | None = None  # this machine's cores in the plan: an exclusive unit's, run here

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def address(self) -> str | None:
        """The scheduler's address once a cluster is up or connected (None: serial, or not started yet)."""
        return None if self._client is None else self._client.scheduler.address

    def close(self) -> None:
        """Shut down the local cluster (or disconnect from an existing one)."""
        if self._client is not None:
            self._client.close()
        if self._cluster is not None:
            self._cluster.close()
        self._client = self._cluster = None

    # --- saved records ------------------------------------------------------------------------------------

    def _saved(self, unit: Unit) -> dict | None:
        if self.results is None or self.fresh:
            return None
        path = self.results / f"{unit.key}.json"
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if record.get("status") != "done" or record.get("config") != _jsonable(unit.config):
            return None
        return record

    def _save(self, record: dict) -> None:
        if self.results is None:
            return
        from memlib.bench import write_json

        write_json(self.results / f"{record['key']}.json", record)

    # --- where units run ----------------------------------------------------------------------------------

    def _connect(self, units: Sequence[Unit]) -> None:
        """Start the local cluster or connect to the given one, once; serial (no client) where one worker plans."""
        if self._client is not None or (self.scheduler is None and self._threads is not None):
            return
        import dask
        from distributed import Client, Nanny, Scheduler, SpecCluster

        if self.scheduler is not None:
            self._client = Client(self.scheduler, timeout="30s")
            self.log(f"cluster {self.scheduler}: {len(self._client.scheduler_info()['workers'])} workers")
            return
        plan = plan_workers(units, self.workers, gpus=self.gpus)
        self._threads = plan[0].threads
        self._cores = plan[0].threads * len(plan)
        if len(plan) == 1:  # a plain run in this process (on its first visible GPU, where units take one)
            self.log(f"serial: in this process ({plan[0].threads} cores)")
            return
        # A unit that kills its worker (out of memory) is reported at once, not retried on the next worker.
        with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
            specs = {
                f"w{i}": dict(
                    cls=Nanny,
                    options=dict(
                        nthreads=1,  # one unit per process: torch's thread count is per process
                        resources=w.resources(),
                        memory_limit=w.memory,
                        env={} if w.gpu is None else {"CUDA_VISIBLE_DEVICES": w.gpu},
                        host="127.0.0.1",
                        dashboard=False,
                        silence_logs=40,
                    ),
                )
                for i, w in enumerate(plan)
            }
            scheduler = dict(cls=Scheduler, options=dict(host="127.0.0.1", dashboard=False, dashboard_address=":0"))
            self._cluster = SpecCluster(workers=specs, scheduler=scheduler, silence_logs=40)
            self._client = Client(self._cluster)
        gpus = [w.gpu for w in plan if w.gpu is not None]
        self.log(f"local cluster: {len(plan)} workers of {plan[0].threads} threads and {plan[0].memory / GIB:.1f} GiB"
                 + (f", GPUs {', '.join(gpus)}" if gpus else ""))

    def _worker_threads(self, units: Sequence[Unit]) -> int:
        """Threads of a unit that takes all of its worker's: the plan's share, or the least any worker offers."""
        if self._threads is None:
            offered = [w["resources"].get("threads") for w in self._client.scheduler_info()["workers"].values()]
            self._threads = min((t for t in offered if t), default=1)
        return self._threads

    def _check_cluster(self, units: Sequence[Unit], threads: dict[str, int]) -> None:
        """Every unit fits some worker of an existing cluster (else it would wait for ever)."""
        workers = list(self._client.scheduler_info()["workers"].values())
        for unit in units:
            need = _resources(unit, threads[unit.key])
            if not any(all(w["resources"].get(k, 0) >= v for k, v in need.items()) for w in workers):
                fail("Executor.run", f"a worker offering resources {need} for unit {unit.key} (start workers with "
                     "`dask worker ADDRESS --nthreads 1 --resources \"threads=N,memory=BYTES\"`, add GPU=1 with "
                     "CUDA_VISIBLE_DEVICES for a GPU)",
                     "; ".join(f"a worker offering {w['resources']}" for w in workers) if workers else "no workers")

    # --- a run --------------------------------------------------------------------------------------------

    def run(self, units: Sequence[Unit]) -> list[dict]:
        """Run ``units`` (resuming saved ones) and return their records in the same order; progress goes to ``log``.

        A record holds ``key``, ``config``, ``status`` (``"done"`` or ``"failed"``), ``value``, ``error``,
        ``output`` (what the unit printed), ``seconds``, ``threads``, ``worker``, ``gpu``, and ``resumed`` (taken
        from ``results``).
        """
        units = list(units)
        _check_units(units)
        records: dict[str, dict] = {}
        for unit in units:
            saved = self._saved(unit)
            if saved is not None:
                records[unit.key] = {**saved, "resumed": True}
        todo = [u for u in units if u.key not in records]
        progress = _Progress(len(units), self.log)
        for unit in units:
            if unit.key in records:
                progress.done(records[unit.key])
        if todo:
            self._connect(todo)
            share = self._worker_threads(todo)
            threads = {u.key: u.threads or (self._cores if u.exclusive and self._cores else share) for u in todo}
            if self._client is not None and self.scheduler is not None:
                self._check_cluster(todo, threads)
            started = time.perf_counter()
            for phase in ([u for u in todo if not u.exclusive], [u for u in todo if u.exclusive]):
                for record in self._phase(phase, threads, started):
                    record["resumed"] = False
                    self._save({k: v for k, v in record.items() if k != "resumed"})
                    records[record["key"]] = record
                    progress.done(record)
        progress.finish()
        return [records[u.key] for u in units]

    def _phase(self, units: list[Unit], threads: dict[str, int], started: float) -> Iterator[dict]:
        """Records of ``units`` as they finish: in this process (serial, or exclusive units beside a local cluster),
        or on the cluster (exclusive ones one at a time)."""
        if not units:
            return
        if self._client is None or (units[0].exclusive and self._cluster is not None):
            for unit in units:
                yield perform(unit, threads[unit.key])
            return
        from distributed import as_completed

        batches = [[u] for u in units] if units[0].exclusive else [units]
        for batch in batches:
            futures = {  # the units start in the order given (list the longest first)
                self._client.submit(perform, u, threads[u.key], key=f"{u.key}-{time.time_ns()}",
                                    resources=_resources(u, threads[u.key]), priority=len(batch) - i, pure=False): u
                for i, u in enumerate(batch)
            }
            left = None if self.timeout is None else max(1.0, self.timeout - (time.perf_counter() - started))
            pending = set(futures)
            try:
                for future in as_completed(futures, timeout=left):
                    pending.discard(future)
                    yield _collect(future, futures[future])
            except TimeoutError:
                for future in pending:
                    future.cancel()
                    yield _failed(futures[future], f"TimeoutError: not finished within {self.timeout:g} s")


def _resources(unit: Unit, threads: int) -> dict[str, int]:
    need = dict(threads=threads, memory=unit.memory)
    if unit.gpu:
        need["GPU"] = 1
    return need


def _failed(unit: Unit, error: str) -> dict:
    return dict(key=unit.key, config=_jsonable(unit.config), status="failed", value=None, error=error, output="",
                seconds=None, threads=None, worker=None, gpu=None)


def _collect(future: Any, unit: Unit) -> dict:
    """A finished future's record; a worker that died under the unit (out of memory, a crash) fails it."""
    try:
        return future.result()
    except Exception as exc:  # perform() catches the unit's own errors: this is its worker or the cluster failing
        return _failed(unit, f"{type(exc).__name__}: {exc} (its worker failed: out of memory, or a crash)")


class _Progress:
    """One line per finished unit: done and remaining, and the unit's time."""

    def __init__(self, total: int, log: Callable[[str], None]):
        self.total, self.log, self.count, self.failed, self.resumed = total, log, 0, [], 0
        self.start = time.perf_counter()

    def done(self, record: dict) -> None:
        self.count += 1
        where = f" on {record['worker']}" if record.get("worker") and not record.get("resumed") else ""
        seconds = "" if record["seconds"] is None else f" in {record['seconds']:.1f} s"
        if record.get("resumed"):
            self.resumed += 1
            word = "resumed"
        else:
            word = "done" if record["status"] == "done" else "FAILED"
        line = f"[{self.count}/{self.total}, {self.total - self.count} left] {word} {record['key']}{seconds}{where}"
        if record["status"] != "done":
            self.failed.append(record["key"])
            line += f"\n  config: {json.dumps(record['config'])}\n  " + record["error"].strip().replace("\n", "\n  ")
        if record.get("output") and not record.get("resumed"):
            line += "\n" + record["output"].rstrip()
        self.log(line)

    def finish(self) -> None:
        failed = f"; FAILED: {', '.join(self.failed)}" if self.failed else ""
        self.log(f"{self.total} units: {self.total - len(self.failed)} done ({self.resumed} resumed), "
                 f"{len(self.failed)} failed in {time.perf_counter() - self.start:.1f} s{failed}")
