"""The article's claims, checked: a criterion fixed before measuring, a computed verdict, and a record.

A :class:`Claim` names what the article says (its sentence, word for word, and its section), the quantity a page
measures and the criterion that decides, written before the page measures anything. The page measures an
:class:`Estimate` (a value and the interval it is known to: exact, the spread over seeds, or a timing ratio's
A/A noise band) and calls :func:`check`, which computes the verdict and shows the "Claim check" box:

- **holds**: the whole interval satisfies the criterion;
- **holds in part** (``"partly"``): the whole interval reaches the criterion's weaker level, or the claim's
  parts disagree (some hold, some do not);
- **does not hold** (``"fails"``): the whole interval misses the weaker level;
- **inconclusive**: the interval straddles a boundary (the noise band or the seed spread is wider than the
  difference), or a baseline that should have learned did not (``requires``);
- **not tested**: :func:`not_tested`, with the reason.

No verdict is written by hand. Each box carries its machine-readable record in the output's metadata (key
``"memlib.claim"``), which the ledger page (``book/article_checked.ipynb``) collects from the committed pages
with :func:`collect` and shows with :func:`ledger_html`.

Timing ratios are only as good as the machine's noise: :func:`time_ratio` times the two calls interleaved with
an A/A control (the baseline timed against itself in the same run); a ratio whose A/A band reaches across the
criterion is "within noise", never met or missed.

>>> claim = Claim("lstm-params", "LSTMs have about four times the parameters of RNNs.", "2",
...               "LSTM parameters / RNN parameters at the same width", at_least(3.5, partly=2.0))
>>> check(claim, exact(4.0), "Four gate blocks against one.", show=False).verdict
'holds'
"""

from __future__ import annotations

import html
import json
import math
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch

from memlib.validate import check_int, fail, is_number

__all__ = [
    "METADATA_KEY",
    "VERDICTS",
    "Claim",
    "Criterion",
    "Estimate",
    "Result",
    "at_least",
    "at_most",
    "check",
    "collect",
    "exact",
    "interleaved_seconds",
    "ledger_html",
    "measured_text",
    "noise_band",
    "not_tested",
    "over_seeds",
    "target_met",
    "time_ratio",
    "verdict_of",
    "within_noise",
]

METADATA_KEY = "memlib.claim"  # where a box's record lives in its output's metadata
VERDICTS = ("holds", "partly", "fails", "inconclusive", "not tested")
LABELS = {
    "holds": "Holds",
    "partly": "Holds in part",
    "fails": "Does not hold",
    "inconclusive": "Inconclusive",
    "not tested": "Not tested",
}
_STYLE = {  # line, fill
    "holds": ("#1b7837", "#e9f5ec"),
    "partly": ("#b35806", "#fdf0e2"),
    "fails": ("#b2182b", "#fbe9eb"),
    "inconclusive": ("#4d4d4d", "#f0f0f0"),
    "not tested": ("#4d4d4d", "#f0f0f0"),
}


class Estimate(NamedTuple):
    """A measured value and the interval it is known to, with how that interval was obtained.

    >>> exact(3).low, exact(3).high
    (3.0, 3.0)
    """

    value: float  # the central value: exact, the median over seeds, the median ratio
    low: float  # the interval's ends: equal for an exact count
    high: float
    basis: str  # how the interval was obtained, e.g. "exact", "3 seeds: min..max", "A/A band x1.21"

    def text(self, spec: str = ".3g") -> str:
        """The value and, where it has one, its interval: ``"4"`` or ``"0.91 [0.87, 0.95] (3 seeds)"``.

        >>> over_seeds([0.9, 0.95, 0.8]).text(".2f")
        '0.90 [0.80, 0.95] (3 seeds: min..max)'
        """
        if self.low == self.high:
            return format(self.value, spec)
        return f"{self.value:{spec}} [{self.low:{spec}}, {self.high:{spec}}] ({self.basis})"


def _finite(where: str, name: str, value: object) -> float:
    if not is_number(value) or not math.isfinite(float(value)):
        fail(where, f"{name} as a finite number", repr(value))
    return float(value)


def exact(value: float) -> Estimate:
    """A value known exactly (a count, a ratio of counts, a deterministic result).

    >>> exact(0.75)
    Estimate(value=0.75, low=0.75, high=0.75, basis='exact')
    """
    value = _finite("exact", "value", value)
    return Estimate(value, value, value, "exact")


def over_seeds(values: Sequence[float]) -> Estimate:
    """A learned result over several seeds: the median, and the interval from the lowest to the highest seed.

    One seed gives a point and says so: a verdict from one seed cannot see the spread.

    >>> over_seeds([0.5, 0.7, 0.6])
    Estimate(value=0.6, low=0.5, high=0.7, basis='3 seeds: min..max')
    """
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        fail("over_seeds", "values as a sequence of numbers, one per seed", repr(values), TypeError)
    values = [_finite("over_seeds", "each value", v) for v in values]
    if not values:
        fail("over_seeds", "at least one value", "none")
    n = len(values)
    basis = "1 seed: no spread" if n == 1 else f"{n} seeds: min..max"
    return Estimate(statistics.median(values), min(values), max(values), basis)


def noise_band(a_seconds: Sequence[float], b_seconds: Sequence[float]) -> float:
    """The A/A band of two timings of the same call, taken interleaved: the largest per-repeat ratio, as a factor.

    A ratio between two different calls that lies within ``1 / band .. band`` of 1 is within noise.

    >>> round(noise_band([1.0, 1.1, 1.0], [1.0, 1.0, 1.2]), 3)
    1.2
    """
    if len(a_seconds) != len(b_seconds) or not a_seconds:
        fail("noise_band", "two equally long, non-empty lists of seconds", f"{len(a_seconds)} and {len(b_seconds)}")
    logs = [abs(math.log(_finite("noise_band", "seconds", a) / _finite("noise_band", "seconds", b)))
            for a, b in zip(a_seconds, b_seconds, strict=True)]
    return math.exp(max(logs))


def within_noise(ratio: float, band: float) -> bool:
    """Whether a time ratio lies inside the A/A band (``1 / band .. band``): then no difference was measured.

    >>> within_noise(1.15, 1.2), within_noise(1.3, 1.2)
    (True, False)
    """
    return abs(math.log(ratio)) <= math.log(band) * (1 + 1e-9)  # the A/A ratio that set the band is inside it


def target_met(ratio: float, band: float, limit: float) -> str:
    """A timing target ``ratio <= limit`` judged against the A/A ``band``: ``"met"`` where the ratio is within the
    limit even when widened by the band, ``"missed"`` where it is over the limit even when narrowed by it, else
    ``"within noise"``. The bench suites judge their targets with this; pages use :func:`check`.

    >>> target_met(0.9, 1.05, 1.1), target_met(1.3, 1.05, 1.1), target_met(1.15, 1.2, 1.1)
    ('met', 'missed', 'within noise')
    """
    if not (is_number(band) and band >= 1):
        fail("target_met", "band as a factor >= 1 (from noise_band)", repr(band))
    ratio = _finite("target_met", "ratio", ratio)
    verdict = verdict_of(at_most(limit), Estimate(ratio, ratio / band, ratio * band, f"A/A band x{band:.2f}"))
    return {"holds": "met", "fails": "missed"}.get(verdict, "within noise")


def interleaved_seconds(
    calls: Mapping[str, Callable[[], Any]], repeats: int = 7, *, number: int = 1, warmup: int = 1
) -> dict[str, list[float]]:
    """Seconds per call of each of ``calls``, timed in turn within every repeat so they share the machine's noise.

    Each repeat times every call with ``torch.utils.benchmark.Timer`` (``number`` calls, which waits for
    queued GPU work), in an order that rotates from repeat to repeat.

    >>> s = interleaved_seconds({"a": lambda: sum(range(100)), "b": lambda: sum(range(100))}, repeats=3)
    >>> sorted(s), len(s["a"])
    (['a', 'b'], 3)
    """
    from torch.utils.benchmark import Timer

    repeats = check_int("interleaved_seconds", "repeats", repeats, low=1)
    number = check_int("interleaved_seconds", "number", number, low=1)
    if not calls:
        fail("interleaved_seconds", "at least one call", "none")
    names = list(calls)
    timers = {name: Timer(stmt="fn()", globals={"fn": calls[name]}) for name in names}
    for name in names:
        for _ in range(warmup):
            calls[name]()
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:
            seconds[name].append(timers[name].timeit(number).mean)
    return seconds


def time_ratio(
    numerator: Callable[[], Any], denominator: Callable[[], Any], repeats: int = 7, *, number: int = 1
) -> tuple[Estimate, dict[str, list[float]]]:
    """The time of ``numerator`` over that of ``denominator``, with an A/A control, and the seconds behind it.

    Three calls are timed interleaved: the numerator, the denominator and the denominator again (the A/A
    control). The estimate is the median of the per-repeat ratios; its interval is that ratio divided and
    multiplied by the A/A band (:func:`noise_band`), so a criterion at 1 is met or missed only outside the noise.

    >>> est, seconds = time_ratio(lambda: sum(range(2000)), lambda: sum(range(1000)), repeats=5)
    >>> est.low <= est.value <= est.high, sorted(seconds)
    (True, ['A/A', 'denominator', 'numerator'])
    """
    seconds = interleaved_seconds(
        {"numerator": numerator, "denominator": denominator, "A/A": denominator}, repeats, number=number
    )
    ratios = [n / d for n, d in zip(seconds["numerator"], seconds["denominator"], strict=True)]
    band = noise_band(seconds["A/A"], seconds["denominator"])
    value = statistics.median(ratios)
    return Estimate(value, value / band, value * band, f"A/A band x{band:.2f}, {repeats} repeats"), seconds


@dataclass(frozen=True)
class Criterion:
    """What decides, fixed before measuring: a level at which the claim holds and, optionally, a weaker one at
    which it holds in part. Build one with :func:`at_least` or :func:`at_most`.

    >>> at_least(3.0, partly=2.0).level(2.5)
    'partly'
    """

    direction: str  # ">=" or "<="
    holds: float
    partly: float | None = None

    def level(self, x: float) -> str:
        """The verdict for a point value ``x``: ``"holds"``, ``"partly"`` or ``"fails"``."""
        def meets(bound: float) -> bool:
            return x >= bound if self.direction == ">=" else x <= bound

        if meets(self.holds):
            return "holds"
        if self.partly is not None and meets(self.partly):
            return "partly"
        return "fails"

    def text(self, measure: str = "value") -> str:
        """The criterion in words.

        >>> at_most(1.0).text("time ratio")
        'holds if time ratio <= 1'
        """
        out = f"holds if {measure} {self.direction} {self.holds:g}"
        if self.partly is not None:
            out += f", in part if {self.direction} {self.partly:g}"
        return out


def _criterion(direction: str, holds: float, partly: float | None) -> Criterion:
    where = "at_least" if direction == ">=" else "at_most"
    holds = _finite(where, "holds", holds)
    if partly is not None:
        partly = _finite(where, "partly", partly)
        weaker = partly <= holds if direction == ">=" else partly >= holds
        if not weaker:
            fail(where, f"partly as a weaker level than holds = {holds:g}", f"{partly:g}")
    return Criterion(direction, holds, partly)


def at_least(holds: float, partly: float | None = None) -> Criterion:
    """The claim holds where the measured value is at least ``holds``; in part where it is at least ``partly``.

    >>> at_least(0.9).level(0.95), at_least(0.9).level(0.5)
    ('holds', 'fails')
    """
    return _criterion(">=", holds, partly)


def at_most(holds: float, partly: float | None = None) -> Criterion:
    """The claim holds where the measured value is at most ``holds``; in part where it is at most ``partly``.

    >>> at_most(1.0, partly=1.5).level(1.2)
    'partly'
    """
    return _criterion("<=", holds, partly)


def verdict_of(criterion: Criterion, estimate: Estimate) -> str:
    """The verdict of an interval: the level of both ends where they agree; ``"partly"`` where one end holds and
    the other holds in part; ``"inconclusive"`` where the interval reaches from a miss to a pass.

    >>> verdict_of(at_most(1.0), Estimate(0.9, 0.8, 1.1, "A/A band x1.2"))
    'inconclusive'
    >>> verdict_of(at_least(0.9, partly=0.5), over_seeds([0.85, 0.95]))
    'partly'
    """
    ends = {criterion.level(estimate.low), criterion.level(estimate.high)}
    if len(ends) == 1:
        return ends.pop()
    if ends == {"holds", "partly"}:
        return "partly"
    return "inconclusive"


def _combine(verdicts: Sequence[str]) -> str:
    """One claim's verdict from its parts' verdicts, leaving out parts not tested.

    All hold: holds. All fail: does not hold. Some hold (wholly or in part) and others do not, or are
    inconclusive: holds in part. Otherwise (failures and inconclusive parts): inconclusive.

    >>> _combine(["holds", "fails"]), _combine(["fails", "inconclusive"]), _combine(["not tested"])
    ('partly', 'inconclusive', 'not tested')
    """
    tested = [v for v in verdicts if v != "not tested"]
    if not tested:
        return "not tested"
    if all(v == "holds" for v in tested):
        return "holds"
    if all(v == "fails" for v in tested):
        return "fails"
    if any(v in ("holds", "partly") for v in tested):
        return "partly"
    return "inconclusive"


@dataclass(frozen=True)
class Claim:
    """One claim of the article, and how a page decides it.

    ``id`` is the claim's name across the book: a claim checked on two pages has one id and must get one verdict.
    ``quote`` is the article's sentence, word for word; ``section`` its section of the article; ``measure`` the
    quantity measured; ``criterion`` decides it, or ``parts`` (names to criteria) where the claim has several
    parts, each measured on its own.
    """

    id: str
    quote: str
    section: str
    measure: str
    criterion: Criterion | None = None
    parts: Mapping[str, Criterion] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("id", "quote", "section", "measure"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                fail("Claim", f"{name} as a non-empty string", repr(value), TypeError)
        if (self.criterion is None) == (not self.parts):
            fail("Claim", "either a criterion or parts (names to criteria), not both or neither",
                 f"criterion={self.criterion!r}, parts={dict(self.parts)!r}", TypeError)
        for name, crit in {"": self.criterion, **self.parts}.items():
            if crit is not None and not isinstance(crit, Criterion):
                fail("Claim", f"criterion{' of part ' + name if name else ''} as a Criterion (at_least, at_most)",
                     type(crit).__name__, TypeError)


class Result(NamedTuple):
    """What :func:`check` returns: the verdict and the record it showed."""

    verdict: str
    record: dict[str, Any]


def _conditions(extra: Mapping[str, Any] | None) -> dict[str, Any]:
    """What a verdict depends on beyond the page: device, threads, torch, CPU."""
    from memlib.bench import machine

    out: dict[str, Any] = {
        "torch": torch.__version__.split("+")[0],
        "threads": torch.get_num_threads(),
        "cpu": machine()["processor"],
    }
    if torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name(0)
    out.update(dict(extra or {}))
    return out


def _estimates(claim: Claim, measured: Estimate | Mapping[str, Estimate]) -> dict[str, Estimate]:
    names = list(claim.parts) if claim.parts else [""]
    if isinstance(measured, Estimate):
        measured = {"": measured}
    if not isinstance(measured, Mapping) or sorted(measured) != sorted(names):
        got = sorted(measured) if isinstance(measured, Mapping) else type(measured).__name__
        fail(f"check({claim.id})", f"an Estimate for each of {names}" if claim.parts else "one Estimate", got,
             TypeError)
    for est in measured.values():
        if not isinstance(est, Estimate):
            fail(f"check({claim.id})", "Estimates (exact, over_seeds, time_ratio)", type(est).__name__, TypeError)
    return dict(measured)


def check(
    claim: Claim,
    measured: Estimate | Mapping[str, Estimate],
    finding: str,
    *,
    requires: Mapping[str, bool] | None = None,
    conditions: Mapping[str, Any] | None = None,
    show: bool = True,
) -> Result:
    """Compute ``claim``'s verdict from what was ``measured``, show its box, and return the verdict and record.

    ``finding`` (simple HTML) says what the page measured, in words. ``requires`` names conditions a fair test
    needs (e.g. ``{"the LSTM baseline learned the task at its training length": acc > 0.9}``): where one is
    false the verdict is inconclusive, whatever the numbers. ``conditions`` adds what the result depends on
    (device, seeds, a kernel) to the record.

    >>> claim = Claim("gru-faster", "GRUs train faster than LSTMs.", "2", "GRU time / LSTM time", at_most(1.0))
    >>> check(claim, Estimate(0.95, 0.8, 1.1, "A/A band x1.16"), "Within noise.", show=False).verdict
    'inconclusive'
    """
    if not isinstance(claim, Claim):
        fail("check", "a Claim", type(claim).__name__, TypeError)
    if not isinstance(finding, str):
        fail(f"check({claim.id})", "finding as a string", type(finding).__name__, TypeError)
    estimates = _estimates(claim, measured)
    parts = {}
    for name, est in estimates.items():
        crit = claim.parts[name] if claim.parts else claim.criterion
        parts[name] = {"verdict": verdict_of(crit, est), "criterion": crit.text(name or claim.measure),
                       "value": est.value, "low": est.low, "high": est.high, "basis": est.basis}
    verdict = _combine([p["verdict"] for p in parts.values()])
    unmet = [name for name, ok in (requires or {}).items() if not ok]
    reason = None
    if unmet:
        verdict = "inconclusive"
        reason = "not a fair test: " + "; ".join(unmet) + " did not hold"
    record = _record(claim, verdict, finding, parts, reason, conditions)
    if show:
        _display(claim, record)
    return Result(verdict, record)


def not_tested(claim: Claim, reason: str, *, show: bool = True) -> Result:
    """Show ``claim``'s box as not tested, with the ``reason``, and return its record.

    >>> claim = Claim("ad", "Memory networks help diagnose Alzheimer's.", "4", "diagnostic accuracy", at_least(0.8))
    >>> not_tested(claim, "no Alzheimer's data ships offline", show=False).verdict
    'not tested'
    """
    if not isinstance(reason, str) or not reason.strip():
        fail(f"not_tested({getattr(claim, 'id', claim)})", "a reason as a non-empty string", repr(reason))
    record = _record(claim, "not tested", reason, {}, reason, None)
    if show:
        _display(claim, record)
    return Result("not tested", record)


def _record(claim, verdict, finding, parts, reason, conditions) -> dict[str, Any]:
    return {
        "id": claim.id,
        "quote": claim.quote,
        "section": claim.section,
        "measure": claim.measure,
        "verdict": verdict,
        "parts": parts,
        "reason": reason,
        "finding": finding,
        "conditions": _conditions(conditions),
    }


def box_html(claim: Claim, record: Mapping[str, Any]) -> str:
    """The "Claim check" box: the article's quote, the finding, and the verdict with what decided it.

    >>> claim = Claim("x", "A <quote>.", "1", "m", at_least(1))
    >>> '&lt;quote&gt;' in box_html(claim, check(claim, exact(2), "Two.", show=False).record)
    True
    """
    verdict = record["verdict"]
    line, fill = _STYLE[verdict]
    decided = []
    for part in record["parts"].values():
        est = Estimate(part["value"], part["low"], part["high"], part["basis"])
        label = f" ({LABELS[part['verdict']].lower()})" if len(record["parts"]) > 1 else ""
        decided.append(f"{html.escape(part['criterion'])}; measured {html.escape(est.text())}{label}")
    if record["reason"] and verdict == "inconclusive":
        decided.append(html.escape(record["reason"]))
    criterion = (
        '<p class="claim-criterion" style="margin:0.4em 0 0 0;font-size:0.9em">'
        f'<b>Criterion, fixed before measuring:</b> {". ".join(decided)}.</p>'
    ) if decided else ""
    return (
        f'<div class="claim-check" data-claim-id="{html.escape(claim.id)}" data-verdict="{verdict}" '
        f'style="border-left:4px solid {line};background:{fill};padding:0.6em 1em;margin:1em 0;border-radius:4px">'
        f'<p style="margin:0 0 0.4em 0"><b>Claim check</b> (article, section {html.escape(claim.section)}). '
        f'<i>"{html.escape(claim.quote)}"</i></p>'
        f'<p style="margin:0"><b style="color:{line}">{LABELS[verdict]}.</b> {record["finding"]}</p>'
        f"{criterion}</div>"
    )


def measured_text(record: Mapping[str, Any]) -> str:
    """The deciding numbers of a record in one line: ``"0.93 [0.91, 0.97] (3 seeds: min..max)"``, or one
    ``"part: value"`` per part.

    >>> claim = Claim("x", "Quote.", "2", "m", at_least(1))
    >>> measured_text(check(claim, over_seeds([1.5, 2.0, 2.5]), "ok", show=False).record)
    '2 [1.5, 2.5] (3 seeds: min..max)'
    """
    texts = {name: Estimate(p["value"], p["low"], p["high"], p["basis"]).text() for name, p in record["parts"].items()}
    if list(texts) == [""]:
        return texts[""]
    return "; ".join(f"{name}: {text}" for name, text in texts.items()) or (record.get("reason") or "")


def _display(claim: Claim, record: Mapping[str, Any]) -> None:
    from IPython.display import HTML, display

    display(HTML(box_html(claim, record)), metadata={METADATA_KEY: json.loads(json.dumps(record))})


def collect(notebooks: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Every claim record in the outputs of ``notebooks`` (committed ``.ipynb`` files), in page order, each with
    its ``page`` (the notebook's name) added.

    >>> collect([])
    []
    """
    records = []
    for path in notebooks:
        path = Path(path)
        nb = json.loads(path.read_text())
        for cell in nb.get("cells", []):
            for output in cell.get("outputs", []) if cell.get("cell_type") == "code" else []:
                record = output.get("metadata", {}).get(METADATA_KEY)
                if record is not None:
                    records.append({**record, "page": path.stem})
    return records


def ledger_html(records: Sequence[Mapping[str, Any]]) -> str:
    """A table of every record: quote, section, verdict, deciding numbers, conditions, and a link to its page,
    after the totals by verdict.

    >>> claim = Claim("x", "Quote.", "2", "m", at_least(1))
    >>> "Holds" in ledger_html([{**check(claim, exact(2), "ok", show=False).record, "page": "ch01"}])
    True
    """
    totals = {v: sum(r["verdict"] == v for r in records) for v in VERDICTS}
    head = ", ".join(f"{LABELS[v].lower()} {n}" for v, n in totals.items())
    rows = []
    for r in records:
        line, _ = _STYLE[r["verdict"]]
        numbers = "; ".join(
            f"{html.escape(p['criterion'])}: "
            + html.escape(Estimate(p["value"], p["low"], p["high"], p["basis"]).text())
            for p in r["parts"].values()
        ) or html.escape(r.get("reason") or "")
        c = r["conditions"]
        cond = html.escape(", ".join(f"{k} {v}" for k, v in c.items() if k in ("device", "threads", "seeds", "gpu",
                                                                            "kernel", "torch")))
        rows.append(
            f'<tr data-claim-id="{html.escape(r["id"])}" data-verdict="{r["verdict"]}">'
            f'<td><a href="{html.escape(r["page"])}.html">{html.escape(r["page"])}</a></td>'
            f'<td>{html.escape(r["section"])}</td><td><i>"{html.escape(r["quote"])}"</i></td>'
            f'<td style="color:{line};font-weight:bold">{LABELS[r["verdict"]]}</td>'
            f"<td>{numbers}</td><td>{cond}</td></tr>"
        )
    return (
        f'<p class="ledger-totals"><b>{len(records)} claims:</b> {head}.</p>'
        '<table class="claim-ledger"><thead><tr><th>page</th><th>section</th><th>the article says</th>'
        "<th>verdict</th><th>deciding numbers</th><th>conditions</th></tr></thead><tbody>"
        + "".join(rows) + "</tbody></table>"
    )
