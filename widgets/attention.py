"""AttentionExplorer: who attends to whom, per layer and head, and what a sparse pattern would keep and cost.

Shows a query x key heatmap of a traced model's attention weights (tokens on both axes), one layer and one
head at a time (or the average of the heads), and the chosen query's weights as bars. A pattern panel draws
the mask of full, causal, sliding-window (Longformer), BigBird or Linformer attention for sliders that set the
window, the global tokens, the random blocks, the block size and Linformer's ``k``, and reports what the scores
would cost: allowed query-key pairs, their share of the full ``T^2``, and their bytes at float32, for this
sentence and for a longer sequence of ``n`` tokens with the same parameters.

On the right, the chosen head's weights *renormalised inside the pattern*. Restricting a softmax to a subset of
keys is the same as renormalising its weights over that subset (``softmax_S(s)_j = e^{s_j} / sum_{i in S}
e^{s_i}``), so this is exactly what the head would give under the pattern, for this layer's queries and keys.

Every mask drawn in the page equals memlib's: ``causal_mask``, ``SlidingWindowAttention.mask`` (global tokens
are the first ``G`` positions) and ``BigBirdAttention.mask``. BigBird's random blocks come from memlib's own
generator: for each block size and seed, the page holds the order in which ``BigBirdAttention.key_blocks``
draws the other blocks, and takes the first ``num_random_blocks`` outside the window and the global blocks, as
memlib does. A sentence whose length is not a multiple of the block size is padded to one (memlib requires it)
and the mask cut back to ``T``.

Cross-attention. Given ``key_tokens``, the weights are (L, H, T, S): T queries from one sequence (a decoder's
steps, a question) over S keys from another (an encoder's states, a document). The heatmap's rows carry the
query tokens and its columns the key tokens; layer, head and query selectors work as before. The pattern panel
is off: full, causal, sliding-window, BigBird and Linformer are patterns of a sequence attending to itself
(query ``i`` and key ``i`` are the same position), which cross-attention does not have; the page says so.

Static (Bokeh + CustomJS, no kernel): layer, head and query selectors, the pattern selector and its sliders.
Live (ipywidgets): a sentence, a temperature and a pattern; a ``compute(settings)`` the chapter supplies reruns
a memlib model under ``memlib.trace()`` and the same figures redraw.

Shapes: ``L`` layers, ``H`` heads, ``T`` tokens (queries = keys: self-attention; the queries in cross-attention),
``S`` the keys of cross-attention, ``k`` Linformer's projected
length, ``n`` a longer sequence, ``b`` BigBird's block size, ``nb`` its number of blocks.
"""

from __future__ import annotations

import dataclasses
import html
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from bokeh.layouts import column, row
from bokeh.models import (
    BasicTicker,
    BoxAnnotation,
    ColorBar,
    CustomJS,
    CustomJSTickFormatter,
    Div,
    FixedTicker,
    HoverTool,
    LinearColorMapper,
    Range1d,
    Select,
    Slider,
)
from bokeh.palettes import RdBu11, interp_palette
from bokeh.plotting import figure

from memlib.validate import check_array, check_length
from widgets.base import (
    Explorer,
    Prepared,
    Refused,
    check_number,
    check_text,
    custom_js,
    fixed,
    load_js,
    merge_settings,
)

PATTERNS = {
    "full": "full",
    "causal": "causal",
    "sliding_window": "sliding window (Longformer)",
    "bigbird": "BigBird",
    "linformer": "Linformer",
}
BLOCK_SIZES = (1, 2, 4, 8, 16)  # powers of two: every n offered below is a multiple of each
N_CHOICES = (512, 1024, 2048, 4096, 8192, 16384, 32768, 65536)
SEEDS = 4  # BigBird seeds whose random blocks the page holds (0 .. SEEDS - 1)
MAX_TOKENS = 48  # a T x T map of 48 tokens still reads in the book's column (every 3rd token labelled)
MAX_RANDOM = 6  # random blocks per query block the slider offers
MAX_K = 256  # Linformer's k slider: the paper's largest
TEMPERATURES = (0.25, 4.0)  # the live temperature slider's ends: scores divided by 0.25 to 4
ROW_TOLERANCE = 1e-3  # float32 softmax rows sum to 1 within ~1e-6; leave room for averaged or rounded weights
WIDTH = 660  # fits the book's output column (688 px in a 1280 px window)
LABEL_PX = 13  # room per token label along an axis: an 8pt label is ~11 px tall, rotated or not
AXIS_FRAME_PX = 110  # what a figure's title, colour bar and the other axis's labels take from an axis's length
# Light yellow (weight 0) to dark blue: blocked cells (light grey) stay apart from small weights.
PALETTE = interp_palette(("#ffffd9", "#edf8b1", "#c7e9b4", "#7fcdbb", "#41b6c4", "#1d91c0", "#225ea8", "#253494",
                          "#081d58"), 256)
BLOCKED = "#bdbdbd"


@dataclass(frozen=True)
class PatternParams:
    """The pattern sliders' values; one set serves every pattern (each uses the fields it needs).

    >>> PatternParams(window=2).window, PatternParams().n
    (2, 4096)
    >>> PatternParams(block=0)
    Traceback (most recent call last):
    ...
    ValueError: PatternParams: expected block as an integer >= 1, got 0
    """

    window: int = 1  # radius: 2w + 1 keys per query (sliding window) or 2w + 1 blocks per query block (BigBird)
    n_global: int = 1  # the first G tokens (sliding window) or blocks (BigBird) see and are seen by all, like [CLS]
    n_random: int = 1  # BigBird's random key blocks per query block (memlib's default)
    block: int = 1  # BigBird's block size b: 1 draws token-level blocks, readable on a sentence
    seed: int = 0  # BigBird's random draw
    k: int = 4  # Linformer's projected length (the paper uses 128-256 for n = 512-4096)
    n: int = 4096  # the longer sequence the memory report extrapolates to

    def __post_init__(self):
        for name in ("window", "n_global", "n_random", "seed", "block", "k", "n"):
            check_length("PatternParams", name, getattr(self, name), minimum=1 if name in ("block", "k", "n") else 0)


# Masks and their costs, in Python (tests compare them with memlib; the page runs the same in JavaScript) ------


def bigbird_order(nb: int, seed: int) -> np.ndarray:
    """(nb, nb - 1): for each query block, the other blocks in the order memlib's BigBird draws random blocks.

    ``BigBirdAttention.key_blocks`` draws a uniform number per (query block, key block) from ``seed`` and ``nb``,
    hides the window and global blocks, and takes the smallest ``num_random_blocks``. With a one-block window,
    no global block and ``nb`` random blocks it returns every other block in that order (smallest first).

    >>> bigbird_order(4, seed=0)  # row i: the blocks other than i, in draw order
    array([[2, 3, 1],
           [0, 3, 2],
           [3, 0, 1],
           [1, 2, 0]], dtype=int16)
    """
    import torch  # here, not at the top: `import widgets` stays free of torch until a page is built

    from memlib.efficient import BigBirdAttention

    if nb < 2:
        return np.zeros((nb, 0), np.int16)
    with torch.random.fork_rng(devices=[]):  # the module's weight init must not move the caller's RNG
        attn = BigBirdAttention(1, 1, block_size=1, num_window_blocks=1, num_global_blocks=0,
                                num_random_blocks=nb, seed=seed)
    blocks = attn.key_blocks(nb)  # (nb, 1 + nb): itself, then the others by draw, then -1 (itself, hidden)
    return blocks[:, 1:nb].numpy().astype(np.int16)


def pattern_allowed(pattern: str, T: int, params: PatternParams, order: np.ndarray | None = None) -> np.ndarray:
    """(T, T) boolean, True where query i may attend to key j (memlib's masks are the negation: True = blocked).

    ``order`` is :func:`bigbird_order` for ``nb = ceil(T / block)`` blocks and ``params.seed`` (computed if not
    given). Linformer blocks no pair: it mixes every key into ``k`` projected ones.

    >>> pattern_allowed("causal", 4, PatternParams()).astype(int)
    array([[1, 0, 0, 0],
           [1, 1, 0, 0],
           [1, 1, 1, 0],
           [1, 1, 1, 1]])
    """
    if pattern not in PATTERNS:
        raise ValueError(f"pattern_allowed: expected pattern in {list(PATTERNS)}, got {pattern!r}")
    i = np.arange(T)[:, None]  # (T, 1): query
    j = np.arange(T)[None, :]  # (1, T): key
    if pattern in ("full", "linformer"):
        return np.ones((T, T), bool)
    if pattern == "causal":
        return j <= i
    if pattern == "sliding_window":
        G = params.n_global
        return (np.abs(i - j) <= params.window) | (i < G) | (j < G)
    b = params.block
    nb = -(-T // b)  # ceil: a sentence that is not a multiple of b is padded to one
    if order is None:
        order = bigbird_order(nb, params.seed)
    if order.shape != (nb, max(nb - 1, 0)):
        raise ValueError(f"pattern_allowed: expected a BigBird order of shape ({nb}, {nb - 1}), got {order.shape}")
    r, g = params.window, min(params.n_global, nb)
    q = np.arange(nb)[:, None]  # (nb, 1): query block
    o = np.arange(nb)[None, :]  # (1, nb): key block
    fixed = (np.abs(o - q) <= r) | (o < g)  # window and global key blocks
    blocks = fixed.copy()
    for qb in range(nb):
        free = [int(ob) for ob in order[qb] if not fixed[qb, ob]]  # memlib's random candidates, by draw
        blocks[qb, free[: params.n_random]] = True
    blocks[:g] = True  # global query blocks attend to every key
    return blocks.repeat(b, 0).repeat(b, 1)[:T, :T]


def pattern_pairs(pattern: str, n: int, params: PatternParams) -> int:
    """Query-key pairs a pattern scores for ``n`` tokens (``pattern_allowed(...).sum()``, by formula, for any n).

    Full ``n^2``; causal ``n (n + 1) / 2``; sliding window ``n^2 - m^2 + band(m)`` with ``m = n - G`` the
    non-global tokens and ``band(m) = m (2w + 1) - w (w + 1)``; BigBird ``b^2`` times the key blocks of each query
    block (``n`` must be a multiple of ``b``); Linformer ``n k`` (queries x projected keys).

    >>> pattern_pairs("causal", 4, PatternParams()), pattern_pairs("full", 4, PatternParams())
    (10, 16)
    >>> p = PatternParams(window=1, n_global=1)
    >>> pattern_pairs("sliding_window", 6, p), int(pattern_allowed("sliding_window", 6, p).sum())
    (24, 24)
    """
    if pattern == "full":
        return n * n
    if pattern == "causal":
        return n * (n + 1) // 2
    if pattern == "linformer":
        return n * min(params.k, n)
    if pattern == "sliding_window":
        m, w = n - min(params.n_global, n), params.window
        band = m * m if w >= m - 1 else m * (2 * w + 1) - w * (w + 1)
        return n * n - m * m + band
    if pattern != "bigbird":
        raise ValueError(f"pattern_pairs: expected pattern in {list(PATTERNS)}, got {pattern!r}")
    b = params.block
    if n % b:
        raise ValueError(f"pattern_pairs: expected n a multiple of the block size {b} for BigBird, got n = {n}")
    nb, r = n // b, params.window
    g = min(params.n_global, nb)
    blocks = g * nb  # global query blocks see every block
    for q in range(g, nb):
        window = min(q + r, nb - 1) - max(q - r, 0) + 1
        extra = sum(1 for o in range(g) if abs(o - q) > r)  # global blocks outside the window
        blocks += window + extra + min(params.n_random, nb - window - extra)
    return blocks * b * b


def format_bytes(count: float) -> str:
    """``1536`` -> ``"1.5 KiB"`` (binary units, one decimal; whole bytes below 1 KiB).

    >>> format_bytes(1536), format_bytes(512), format_bytes(3 * 2**20)
    ('1.5 KiB', '512 B', '3.0 MiB')
    """
    if count < 1024:
        return f"{int(count)} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        count /= 1024
        if count < 1024 or unit == "TiB":
            return f"{fixed(count, 1)} {unit}"
    raise AssertionError("unreachable")


def _pct(part: float, whole: float) -> str:
    return f"{fixed(100 * part / whole, 1)}%"


def memory_text(pattern: str, T: int, allowed_pairs: int, params: PatternParams, outside: float | None,
                padded: int) -> str:
    """The memory report (HTML); the page's JavaScript writes the same text.

    >>> memory_text("causal", 4, 10, PatternParams(), None, 4)[:80]
    '<b>causal</b>: 10 of 16 query-key pairs allowed (62.5% of T²) for these 4 tokens'
    """
    n, label = params.n, PATTERNS[pattern]
    if pattern == "linformer":
        k = min(params.k, T)
        head = (f"<b>{label}</b>, k = {params.k}: {T} queries x {k} projected keys = {allowed_pairs:,} scores "
                f"({_pct(allowed_pairs, T * T)} of T\u00b2 = {T * T:,}) for these {T} tokens: "
                f"{format_bytes(4 * allowed_pairs)} of float32 scores per head.")
    else:
        head = (f"<b>{label}</b>: {allowed_pairs:,} of {T * T:,} query-key pairs allowed "
                f"({_pct(allowed_pairs, T * T)} of T\u00b2) for these {T} tokens: "
                f"{format_bytes(4 * allowed_pairs)} of float32 scores per head.")
    pairs = pattern_pairs(pattern, n, params)
    at_n = (f"At n = {n:,} tokens: {pairs:,} scores ({_pct(pairs, n * n)} of n\u00b2): "
            f"{format_bytes(4 * pairs)} per head and sequence, against {format_bytes(4 * n * n)} for full attention.")
    if pattern == "linformer":
        note = (f"Linformer blocks no pair: E (k \u00d7 n) mixes all n keys into k = {params.k} slots, so the "
                f"scores grow as n \u00d7 k, and E and F add 2 \u00d7 k \u00d7 n = {2 * params.k * n:,} parameters.")
    elif pattern == "causal":
        note = ("A dense kernel still computes all n\u00b2 scores and zeroes the future; only kernels that skip "
                "blocked tiles save the other half.")
    else:
        note = ""
    if padded != T:
        note += f" T = {T} is padded to {padded} (a multiple of the block size {params.block}), as memlib requires."
    if outside is not None:
        note += (f" The left map puts {fixed(100 * outside, 1)}% of its weight outside the pattern (mean over "
                 "queries); the right map renormalises what is left.")
    return f"{head}<br>{at_n}<br>{note.strip()}"


def cross_text(T: int, S: int) -> str:
    """The cross-attention note that replaces the memory report (HTML).

    >>> cross_text(5, 7)[:63]
    '<b>cross-attention</b>: 5 queries x 7 keys = 35 scores per head'
    """
    return (f"<b>cross-attention</b>: {T} queries x {S} keys = {T * S:,} scores per head "
            f"({format_bytes(4 * T * S)} at float32). The pattern selector (full, causal, sliding window, BigBird, "
            "Linformer) is off: those patterns restrict a sequence attending to itself, and here the queries and "
            "the keys are two different sequences.")


# The page's JavaScript --------------------------------------------------------------------------------------




class AttentionExplorer(Explorer):
    """Explore the attention weights (L, H, T, T) of one sentence, and what sparse patterns would keep and cost.

    ``compute(settings)`` (live layer) takes a dict with keys ``"text"`` (the sentence), ``"temperature"``
    (float: the chapter divides the scores by it), ``"pattern"`` (a key of ``PATTERNS``) and the pattern sliders'
    values ``"window"``, ``"n_global"``, ``"n_random"``, ``"block"``, ``"seed"``, ``"k"`` (as in
    :class:`PatternParams`), and returns :meth:`prepare`'s output. :func:`pattern_allowed` gives the chapter
    memlib's mask for a pattern (``~allowed`` is memlib's True-is-blocked form).

    Cross-attention (``data`` from :meth:`prepare` with ``key_tokens``): weights (L, H, T, S), query tokens down
    the rows and key tokens across; the pattern panel is off (``pattern`` must be ``"full"``), and the live
    layer offers the text and the temperature only. An explorer keeps the mode it was built with.

    >>> import torch
    >>> weights = torch.softmax(torch.randn(1, 2, 3, 3), dim=-1)  # (L, H, T, T): one layer, two heads
    >>> data = AttentionExplorer.prepare(weights, ["the", "cat", "sat"])
    >>> AttentionExplorer(data).data["weights"].shape
    (1, 2, 3, 3)
    """

    def __init__(
        self,
        data: Prepared,
        compute: Callable[[dict[str, Any]], Prepared] | None = None,
        *,
        text: str = "",
        temperature: float = 1.0,
        pattern: str = "full",
        params: PatternParams | None = None,
    ):
        if pattern not in PATTERNS:
            raise ValueError(f"AttentionExplorer: expected pattern in {list(PATTERNS)}, got {pattern!r}")
        self.cross = "key_tokens" in data
        if self.cross and pattern != "full":
            raise ValueError(f"AttentionExplorer: expected pattern 'full' for cross-attention (patterns restrict "
                             f"self-attention), got {pattern!r}")
        if params is None:
            params = PatternParams(k=int(data["linformer_weights"].shape[2]) if "linformer_weights" in data else 4)
        if params.n not in N_CHOICES or params.block not in BLOCK_SIZES or params.seed >= SEEDS:
            raise ValueError(
                f"AttentionExplorer: expected params.n in {list(N_CHOICES)}, block in {list(BLOCK_SIZES)} and seed "
                f"< {SEEDS} (the page's choices), got n = {params.n}, block = {params.block}, seed = {params.seed}"
            )
        self.params = params
        self.settings: dict[str, Any] = {"text": text or " ".join(str(t) for t in data["tokens"]),
                                         "temperature": float(temperature), "pattern": pattern}
        self._built = False
        self._orders_for: tuple[int, dict[str, list]] | None = None  # BigBird's orders for one T
        super().__init__(data, compute)

    # Layer 1: prepare ------------------------------------------------------------------------------------

    @staticmethod
    def prepare(
        weights: Any,
        tokens: Sequence[str],
        *,
        key_tokens: Sequence[str] | None = None,
        linformer_weights: Any = None,
        projection: Any = None,
        max_tokens: int = MAX_TOKENS,
    ) -> Prepared:
        """Validate attention weights and their tokens; return plain arrays.

        Cross-attention: with ``key_tokens`` (S strings), ``weights`` are (L, H, T, S), ``tokens`` the T queries'
        and ``key_tokens`` the S keys' (Linformer's arguments do not apply). The result then also holds
        ``key_tokens`` (S,), which puts the explorer in cross mode.

        ``weights`` (L, H, T, T): layers x heads x queries x keys, each row a softmax (non-negative, summing to 1;
        an all-zero row is a query whose every key was masked). ``tokens``: T strings. Optionally Linformer's
        ``linformer_weights`` (H or 1, T, k), its queries' weights on the k projected keys, and its ``projection``
        E (k, n) with n >= T (the first T columns are used, as memlib does for a shorter input).

        Returns ``weights`` (L, H, T, T), ``tokens`` (T,), and when given ``linformer_weights`` (H or 1, T, k) and
        ``projection`` (k, T).
        """
        where = "AttentionExplorer.prepare"
        cross = key_tokens is not None
        last = "S" if cross else "T"  # cross-attention: S keys from another sequence
        w = check_array(f"{where}: weights", weights, 4, f"(L, H, T, {last}): layers x heads x queries x keys")
        L, H, Tq, Tk = w.shape
        if min(w.shape) == 0:
            raise ValueError(f"{where}: expected weights of shape (L>0, H>0, T>0, {last}>0), got {w.shape}")
        if not cross and Tq != Tk:
            raise ValueError(
                f"{where}: expected square query x key maps (self-attention over one sentence), got Tq = {Tq} and "
                f"Tk = {Tk}; for cross-attention (queries and keys from two sequences) give key_tokens"
            )
        if cross:
            if linformer_weights is not None or projection is not None:
                raise ValueError(f"{where}: expected no linformer_weights or projection with key_tokens (Linformer "
                                 "projects a sequence's own keys: a self-attention pattern)")
            tokens = _check_tokens(where, "tokens", tokens, Tq, "one per query: weights' third dim T", max_tokens)
            key_tokens = _check_tokens(where, "key_tokens", key_tokens, Tk, "one per key: weights' last dim S",
                                       max_tokens)
        else:
            tokens = _check_tokens(where, "tokens", tokens, Tq, "one per query and key", max_tokens)
        T = Tq
        _check_rows(f"{where}: weights", w, ("layer", "head", "query"))
        out: Prepared = {"weights": w, "tokens": np.array(tokens, dtype=str)}
        if cross:
            out["key_tokens"] = np.array(key_tokens, dtype=str)
        if linformer_weights is not None:
            lw = check_array(f"{where}: linformer_weights", linformer_weights, 3, "(H or 1, T, k): heads x queries x k")
            if lw.shape[0] not in (1, H) or lw.shape[1] != T or lw.shape[2] == 0:
                raise ValueError(f"{where}: expected linformer_weights of shape (1 or {H}, {T}, k>0), got {lw.shape}")
            _check_rows(f"{where}: linformer_weights", lw, ("head", "query"))
            out["linformer_weights"] = lw
        if projection is not None:
            if linformer_weights is None:
                raise ValueError(f"{where}: expected linformer_weights with the projection (E alone has no queries)")
            k = out["linformer_weights"].shape[2]
            e = check_array(f"{where}: projection", projection, 2, f"({k}, n): k x sequence length")
            if e.shape[0] != k or e.shape[1] < T:
                raise ValueError(f"{where}: expected projection E of shape ({k}, n >= {T}), got {e.shape}")
            out["projection"] = e[:, :T]
        return out

    @staticmethod
    def from_trace(
        trace: Any,
        tokens: Sequence[str],
        name: str = "attention.weights",
        sample: int = 0,
        *,
        key_tokens: Sequence[str] | None = None,
        projection: Any = None,
        max_tokens: int = MAX_TOKENS,
    ) -> Prepared:
        """:meth:`prepare` on a ``memlib.trace()`` of one call of an attention stack, at batch row ``sample``.

        ``name`` is recorded once per layer, first layer first, each (B, H, T, T) (``memlib.TransformerEncoder``
        records ``attention.weights``): they stack to (L, H, T, T). If the trace also holds ``linformer.weights``
        (B, H, T, k), its last value is the Linformer map; ``projection`` is that layer's ``E`` (a parameter).

        Cross-attention: with ``key_tokens``, each value is (B, H, T, S), or a single head's (B, T, S) or a single
        query's (B, S) (``additive.weights`` and ``luong.weights`` of memlib's :class:`AdditiveAttention` and
        :class:`LuongAttention`): they stack to (L, H, T, S), with H = 1 and T = 1 where the value has no such axis.
        """
        where = "AttentionExplorer.from_trace"
        if name not in trace:
            raise ValueError(
                f"{where}: expected {name!r} in the trace (run the model inside `with memlib.trace() as tr:`), "
                f"got names {trace.names()}"
            )
        values = trace[name]
        shapes = sorted({tuple(v.shape) for v in values})
        if key_tokens is None and (len(shapes) != 1 or len(shapes[0]) != 4):
            raise ValueError(
                f"{where}: expected every {name!r} of one shape (B, H, T, T) (one call of the model), got {shapes}"
            )
        if key_tokens is not None and (len(shapes) != 1 or len(shapes[0]) not in (2, 3, 4)):
            raise ValueError(
                f"{where}: expected every {name!r} of one shape (B, H, T, S), (B, T, S) or (B, S) (one call of the "
                f"model), got {shapes}"
            )
        B = shapes[0][0]
        if not 0 <= sample < B:
            raise ValueError(f"{where}: expected sample in [0, {B}) (the batch), got {sample}")
        weights = np.stack([v[sample].float().cpu().numpy() for v in values])  # (L, H, T, S) or fewer axes
        if weights.ndim == 2:  # one query, one head: (L, S)
            weights = weights[:, None, None]
        elif weights.ndim == 3:  # one head: (L, T, S)
            weights = weights[:, None]
        if key_tokens is not None:
            return AttentionExplorer.prepare(weights, tokens, key_tokens=key_tokens, max_tokens=max_tokens)
        lin = None
        if "linformer.weights" in trace:
            last = trace.last("linformer.weights")  # (B, H, T, k)
            if not 0 <= sample < last.shape[0]:
                got = f"got {sample}"
                raise ValueError(f"{where}: expected sample in [0, {last.shape[0]}) for linformer.weights, {got}")
            lin = last[sample]
        return AttentionExplorer.prepare(weights, tokens, linformer_weights=lin, projection=projection,
                                         max_tokens=max_tokens)

    # Layer 2: the static Bokeh layout ----------------------------------------------------------------------

    def _selection(self, data: Prepared) -> tuple[int, str, int, str, PatternParams]:
        """(layer, head ("0".. or "mean"), query, pattern, params) shown now, clamped to ``data``'s sizes."""
        L, H, T, _ = data["weights"].shape
        if not self._built:
            return 0, "0", T // 2, self.settings["pattern"], self.current_params()
        layer = min(max(int(self.layer_select.value), 0), L - 1)
        head = self.head_select.value
        if head != "mean":
            head = str(min(max(int(head), 0), H - 1))
        q = min(max(self.query_slider.value, 0), T - 1)
        return layer, head, q, self.pattern_select.value, self.current_params()

    def current_params(self) -> PatternParams:
        """The pattern sliders' values now (after the reader moved them, in a live notebook)."""
        if not self._built:  # the constructor's, with a block size this sentence can have and memlib's w >= 1
            blocks = self._block_sizes(self.data["weights"].shape[2])
            p = self.params
            if p.block not in blocks:
                p = dataclasses.replace(p, block=blocks[-1])
            if self.settings["pattern"] != "bigbird" and p.window < 1:
                p = dataclasses.replace(p, window=1)
            return p
        return PatternParams(
            window=int(self.window_slider.value), n_global=int(self.global_slider.value),
            n_random=int(self.random_slider.value), block=int(self.block_select.value),
            seed=int(self.seed_slider.value), k=int(self.k_slider.value), n=int(self.n_select.value),
        )

    def _orders(self, T: int) -> dict[str, list]:
        out: dict[str, list] = {"block": [], "seed": [], "nb": [], "order": []}
        for b in self._block_sizes(T):
            nb = -(-T // b)
            for seed in range(SEEDS):
                out["block"].append(b)
                out["seed"].append(seed)
                out["nb"].append(nb)
                out["order"].append(bigbird_order(nb, seed).ravel())  # (nb * (nb - 1),) int16
        return out

    @staticmethod
    def _block_sizes(T: int) -> list[int]:
        """Block sizes that leave at least two blocks (one block is full attention)."""
        return [b for b in BLOCK_SIZES if b < T] or [1]

    def source_data(self, data: Prepared) -> dict[str, dict[str, Any]]:
        L, H, T, S = data["weights"].shape
        cross = "key_tokens" in data
        tokens = [str(t) for t in data["tokens"]]
        keys = [str(t) for t in data["key_tokens"]] if cross else tokens
        q_idx, k_idx = np.divmod(np.arange(T * S), S)  # cell c = (query, key) = divmod(c, S)
        store = {"layer": [li for li in range(L) for _ in range(H)], "head": [h for _ in range(L) for h in range(H)],
                 "weights": [data["weights"][li, h].ravel().astype(np.float32) for li in range(L) for h in range(H)]}
        lin: dict[str, list] = {"weights": [], "k": []}
        lin_cells: dict[str, Any] = {"x": [], "y": [], "query": [], "weight": []}
        proj_cells: dict[str, Any] = {"x": [], "y": [], "key": [], "value": []}
        if "linformer_weights" in data:
            lw = data["linformer_weights"]  # (H or 1, T, k)
            k = lw.shape[2]
            lin = {"weights": [m.ravel().astype(np.float32) for m in lw], "k": [k] * lw.shape[0]}
            qi, ki = np.divmod(np.arange(T * k), k)
            lin_cells = {"x": ki, "y": qi, "query": [tokens[i] for i in qi], "weight": lw.mean(0).ravel()}
            if "projection" in data:
                si, ti = np.divmod(np.arange(k * T), T)
                proj_cells = {"x": ti, "y": si, "key": [tokens[t] for t in ti],
                              "value": data["projection"].ravel().astype(np.float32)}
        view = self._view(data, *self._selection(data), self._orders_cache(T))
        mask_cells = np.arange(0 if cross else T * S)  # cross-attention has no pattern to draw
        return {
            "attention_store": store,
            "attention_tokens": {"index": list(range(T)), "token": tokens},
            "attention_key_tokens": {"index": list(range(S)), "token": keys, "cross": [int(cross)] * S},
            "attention_weights_view": {"x": k_idx, "y": q_idx, "query": [tokens[i] for i in q_idx],
                                       "key": [keys[j] for j in k_idx], "weight": view["weights"]},
            "attention_mask_view": {"x": k_idx[mask_cells], "y": q_idx[mask_cells],
                                    "query": [tokens[i] for i in q_idx[mask_cells]],
                                    "key": [keys[j] for j in k_idx[mask_cells]], "allowed": view["allowed"],
                                    "weight": view["shown"]},
            "attention_row_view": {"x": list(range(S)), "token": keys, "weight": view["row"],
                                   "inside": view["row_inside"]},
            "attention_bigbird_orders": self._orders_cache(T) if not cross else {"block": [], "seed": [], "nb": [],
                                                                                 "order": []},
            "attention_linformer_store": lin,
            "attention_linformer_view": lin_cells,
            "attention_projection_view": proj_cells,
        }

    def _orders_cache(self, T: int) -> dict[str, list]:
        """BigBird's orders for this T (drawn once per length)."""
        if self._orders_for is None or self._orders_for[0] != T:
            self._orders_for = (T, self._orders(T))
        return self._orders_for[1]

    @staticmethod
    def _view(data: Prepared, layer: int, head: str, q: int, pattern: str, params: PatternParams,
              orders: Mapping[str, list]) -> dict[str, Any]:
        """What the CustomJS computes for a selection: the map, the mask, the renormalised map, the caption."""
        w = data["weights"][layer]  # (H, T, S)
        M = w.mean(0) if head == "mean" else w[int(head)]  # (T, S)
        T, S = M.shape
        if "key_tokens" in data:  # cross-attention: the map and the chosen row, no pattern
            row = M[q].astype(np.float32)
            return {"weights": M.ravel().astype(np.float32), "allowed": np.zeros(0, np.uint8),
                    "shown": np.zeros(0, np.float32), "row": row, "row_inside": row, "memory": cross_text(T, S),
                    "top": float(M.max()), "shown_top": 0.0, "row_top": 1.1 * max(float(M[q].max()), 1e-6)}
        order = None
        if pattern == "bigbird":
            k = [r for r in range(len(orders["block"])) if orders["block"][r] == params.block
                 and orders["seed"][r] == params.seed]
            nb = -(-T // params.block)
            order = np.asarray(orders["order"][k[0]]).reshape(nb, max(nb - 1, 0)) if k else np.zeros((nb, 0), int)
        A = pattern_allowed(pattern, T, params, order)
        total, kept = M.sum(1), (M * A).sum(1)  # (T,)
        with np.errstate(invalid="ignore", divide="ignore"):
            renorm = np.where(kept[:, None] > 0, M / kept[:, None], 0.0)
        shown = np.where(A, renorm, np.nan)
        rows = total > 0
        outside = None
        if rows.any() and pattern not in ("full", "linformer"):
            outside = float(np.mean(1 - kept[rows] / total[rows]))
        allowed = int(A.sum()) if pattern != "linformer" else T * min(params.k, T)
        padded = -(-T // params.block) * params.block if pattern == "bigbird" else T
        return {"weights": M.ravel().astype(np.float32), "allowed": A.ravel().astype(np.uint8),
                "shown": shown.ravel().astype(np.float32), "row": M[q].astype(np.float32),
                "row_inside": np.where(A[q], renorm[q], 0.0).astype(np.float32),
                "memory": memory_text(pattern, T, allowed, params, outside, padded),
                "top": float(M.max()), "shown_top": float(np.nanmax(shown)) if A.any() else 0.0,
                "row_top": 1.1 * max(float(M[q].max()), float(np.where(A[q], renorm[q], 0).max()), 1e-6)}

    def _caption(self, data: Prepared, layer: int, head: str, q: int) -> str:
        tokens = [str(t) for t in data["tokens"]]
        keys = [str(t) for t in data["key_tokens"]] if "key_tokens" in data else tokens
        w = data["weights"][layer]
        row_w = (w.mean(0) if head == "mean" else w[int(head)])[q]
        best = int(np.argmax(row_w))
        who = f"mean of {w.shape[0]} heads" if head == "mean" else f"head {int(head) + 1}"
        return (f"<b>layer {layer + 1}, {who}</b>: query {q + 1} &quot;{html.escape(tokens[q])}&quot; attends most "
                f"to key {best + 1} &quot;{html.escape(keys[best])}&quot; ({fixed(row_w[best], 2)}). "
                f"Rows are queries, columns keys; click a row or move the query slider.")

    @staticmethod
    def _row_title(data: Prepared, q: int) -> str:
        return f'the weights of query {q + 1} "{data["tokens"][q]}" on each key'

    def _map(self, title: str, source: str, mapper: LinearColorMapper, tooltips: list, width: int, height: int,
             x_end: int, y_end: int, fill: str = "weight"):
        """A rect heatmap of ``source`` (x, y cells), y growing downwards (row 0 on top)."""
        fig = figure(width=width, height=height, title=title, x_range=Range1d(-0.5, x_end - 0.5),
                     y_range=Range1d(y_end - 0.5, -0.5), tools="", toolbar_location=None, min_border_right=4)
        cells = fig.rect(x="x", y="y", width=1, height=1, source=self.sources[source],
                         fill_color={"field": fill, "transform": mapper}, line_color=None)
        fig.add_tools(HoverTool(renderers=[cells], tooltips=tooltips))
        fig.add_layout(ColorBar(color_mapper=mapper, width=8, padding=3, major_label_text_font_size="8pt"), "right")
        fig.grid.visible = False
        fig.axis.major_label_text_font_size = "8pt"
        fig.title.text_font_size = "9pt"
        return fig

    def _token_axes(self, fig, T: int, x: bool = True, y: bool = True) -> None:
        """Token labels on the x (keys: the key tokens in cross-attention) and/or y (queries) axis.

        Every ``step``-th token is labelled, ``step`` the smallest that leaves each label ``LABEL_PX`` of the axis:
        labels never overlap however many tokens the page holds."""
        keys = self.data.get("key_tokens", self.data["tokens"])
        for on, axis, tokens, length in ((x, fig.xaxis, keys, fig.width), (y, fig.yaxis, self.data["tokens"][:T],
                                                                           fig.height)):
            if on:
                step = _label_step(len(tokens), length - AXIS_FRAME_PX)
                axis.ticker = FixedTicker(ticks=list(range(0, len(tokens), step)))
                axis.major_label_overrides = {i: _short(str(t)) for i, t in enumerate(tokens)}
        if x:
            fig.xaxis.major_label_orientation = math.pi / 2

    def build(self):
        data = self.data
        T, S = data["weights"].shape[2:]
        layer, head, q, pattern, p = self._selection(data)
        view = self._view(data, layer, head, q, pattern, p, self._orders_cache(T))
        self._selection_widgets(data, layer, head, q)
        self._pattern_widgets(T, pattern, p)
        self.memory = Div(text=view["memory"], width=WIDTH, name="attention_memory_cost",
                          styles={"font-size": "90%"})
        self._weight_maps(view, T, S, q, pattern)
        self._linformer_panel(data, T, pattern)
        self._row_figure(data, view, S, q)
        self.callback = self._callback()
        for widget in (self.layer_select, self.head_select, self.query_slider, self.pattern_select, self.n_select,
                       self.window_slider, self.global_slider, self.random_slider, self.block_select,
                       self.seed_slider, self.k_slider):
            widget.js_on_change("value", self.callback)
        self._built = True
        self._apply_linformer(data)
        note = self._note()
        return column(
            row(self.layer_select, self.head_select, self.query_slider), self.caption,
            row(self.pattern_select, self.n_select, self.k_slider),
            row(self.window_slider, self.global_slider, self.random_slider, self.block_select, self.seed_slider),
            row(self.weights_fig, self.mask_fig, self.lin_panel, self.lin_missing),
            self.memory, self.row_fig, note, name="attention_explorer",
        )

    def _selection_widgets(self, data: Prepared, layer: int, head: str, q: int) -> None:
        """The layer and head selectors, the query slider (labelled with tokens) and the caption."""
        L, H, T = data["weights"].shape[:3]
        self.layer_select = Select(title="layer", value=str(layer), options=[(str(li), f"layer {li + 1}")
                                                                              for li in range(L)],
                                   width=110, name="attention_layer_select")
        self.head_select = Select(title="head", value=head, options=self._head_options(H), width=150,
                                  name="attention_head_select")
        self.query_slider = Slider(start=0, end=max(T - 1, 1), value=q, step=1, width=380,
                                   title="query (row)", name="attention_query_slider",
                                   format=CustomJSTickFormatter(args=dict(tokens=self.sources["attention_tokens"]),
                                                                code=load_js("attention_query_tick")))
        self.caption = Div(text=self._caption(data, layer, head, q), width=WIDTH, name="attention_caption")

    def _pattern_widgets(self, T: int, pattern: str, p: PatternParams) -> None:
        """The pattern selector, the memory report's n, and the sliders the patterns read."""
        self.pattern_select = Select(title="pattern", value=pattern, options=list(PATTERNS.items()), width=200,
                                     name="attention_pattern_select")
        self.n_select = Select(title="memory report at n tokens", value=str(p.n),
                               options=[(str(n), f"{n:,}") for n in N_CHOICES], width=160, name="attention_n_select")
        self.window_slider = Slider(start=min(p.window, 1), end=max(T - 1, 1), value=p.window, step=1, width=150,
                                    title="window", name="attention_window_slider")
        self.global_slider = Slider(start=0, end=max(T, 1), value=p.n_global, step=1, width=150, title="global",
                                    name="attention_global_slider")
        self.random_slider = Slider(start=0, end=MAX_RANDOM, value=p.n_random, step=1, width=120,
                                    title="random blocks", name="attention_random_slider")
        self.block_select = Select(title="block size b", value=str(p.block),
                                   options=[str(b) for b in self._block_sizes(T)], width=90,
                                   name="attention_block_select")
        self.seed_slider = Slider(start=0, end=SEEDS - 1, value=p.seed, step=1, width=110, title="seed",
                                  name="attention_seed_slider")
        self.k_slider = Slider(start=1, end=MAX_K, value=min(p.k, MAX_K), step=1, width=250,
                               title="Linformer k (projected keys)", name="attention_k_slider")
        self._pattern_controls(pattern)

    def _weight_maps(self, view: dict[str, Any], T: int, S: int, q: int, pattern: str) -> None:
        """The weights' map and the map inside the pattern, each with the query's row boxed; a tap picks a row."""
        half = WIDTH // 2
        self.weights_mapper = LinearColorMapper(palette=PALETTE, low=0, high=max(view["top"], 1e-6))
        self.mask_mapper = LinearColorMapper(palette=PALETTE, low=0, high=max(view["shown_top"], 1e-6),
                                             nan_color=BLOCKED)
        cell_tips = [("query", "@query"), ("key", "@key"), ("weight", "@weight{0.000}")]
        if self.cross:  # one map across the column: S keys wide, T query rows high (labels below take ~90 px)
            self.weights_fig = self._map("cross-attention weights: query (row) × key", "attention_weights_view",
                                         self.weights_mapper, cell_tips, WIDTH, min(max(16 * T, 48) + 130, WIDTH),
                                         S, T)
        else:
            self.weights_fig = self._map("attention weights: query (row) × key", "attention_weights_view",
                                         self.weights_mapper, cell_tips, half, half + 30, T, T)
        self.mask_fig = self._map("inside the pattern (grey: blocked)", "attention_mask_view", self.mask_mapper,
                                  cell_tips, half, half + 30, T, T)
        self.mask_fig.name = "attention_mask_figure"
        self.mask_fig.visible = pattern != "linformer" and not self.cross
        self.boxes = []
        for fig in (self.weights_fig, self.mask_fig):
            self._token_axes(fig, T)
            box = BoxAnnotation(bottom=q - 0.5, top=q + 0.5, fill_alpha=0, line_color="#d62728", line_width=1.5)
            fig.add_layout(box)
            self.boxes.append(box)
            fig.js_on_event("tap", custom_js("attention_tap", query=self.query_slider))

    def _linformer_panel(self, data: Prepared, T: int, pattern: str) -> None:
        """Linformer's query x projected-key map and its projection E, or a note where the page has no trace."""
        half = WIDTH // 2
        has_lin = "linformer_weights" in data
        k = data["linformer_weights"].shape[2] if has_lin else 1
        self.lin_mapper = LinearColorMapper(palette=PALETTE, low=0, high=1)
        lin_fig = self._map("Linformer: query × projected key", "attention_linformer_view", self.lin_mapper,
                            [("query", "@query"), ("projected key", "@x"), ("weight", "@weight{0.000}")],
                            half, half // 2 + 40, k, T)
        self._token_axes(lin_fig, T, x=False)
        proj_mapper = LinearColorMapper(palette=list(reversed(RdBu11)), low=-1, high=1)
        proj_fig = self._map("E: projected key × token", "attention_projection_view", proj_mapper,
                             [("projected key", "@y"), ("token", "@key"), ("E", "@value{0.000}")],
                             half, half // 2 + 40, T, k, fill="value")
        self._token_axes(proj_fig, T, y=False)
        proj_fig.visible = has_lin and "projection" in data
        self.lin_panel = column(lin_fig, proj_fig, name="attention_linformer_panel",
                                visible=pattern == "linformer" and has_lin and not self.cross)
        self.lin_missing = Div(text=("This page holds no Linformer weights to draw; the memory report below still "
                                     "follows the k slider: n \u00d7 k scores for n tokens."),
                               width=half, visible=pattern == "linformer" and not has_lin and not self.cross,
                               name="attention_linformer_missing")
        self.lin_figs, self.proj_mapper = (lin_fig, proj_fig), proj_mapper

    def _row_figure(self, data: Prepared, view: dict[str, Any], S: int, q: int) -> None:
        """The chosen query's weights on each key as bars (and, for a pattern, the renormalised ones inside it)."""
        T = data["weights"].shape[2]
        source = self.sources["attention_row_view"]
        self.row_fig = figure(width=WIDTH, height=220, title=self._row_title(data, q),
                              x_range=Range1d(-0.5, S - 0.5), y_range=Range1d(0, view["row_top"]), tools="",
                              toolbar_location=None)
        if self.cross:
            self.row_fig.vbar(x="x", top="weight", width=0.7, source=source, color="#225ea8",
                              legend_label="weights (the map's row)")
        else:
            self.row_fig.vbar(x="x", top="weight", width=0.85, source=source, color="#c9c9c9",
                              legend_label="weights (left map)")
            self.row_fig.vbar(x="x", top="inside", width=0.45, source=source, color="#225ea8",
                              legend_label="inside the pattern, renormalised")
        self.row_fig.add_layout(self.row_fig.legend[0], "above")
        self.row_fig.legend.update(orientation="horizontal", label_text_font_size="8pt", padding=2, spacing=8,
                                   margin=0)
        self.row_fig.title.text_font_size = "9pt"
        self._token_axes(self.row_fig, T, y=False)
        self.row_fig.xgrid.visible = False
        self.row_fig.yaxis.ticker.desired_num_ticks = 4

    def _callback(self) -> CustomJS:
        """The page's JavaScript (widgets/js/attention.js) over the sources, widgets and figures built above."""
        s = self.sources
        return custom_js(
            "attention",
            store=s["attention_store"], tokens=s["attention_tokens"], key_tokens=s["attention_key_tokens"],
            weights_view=s["attention_weights_view"],
            mask_view=s["attention_mask_view"], row_view=s["attention_row_view"],
            orders=s["attention_bigbird_orders"], lin_store=s["attention_linformer_store"],
            lin_view=s["attention_linformer_view"], layer=self.layer_select, head=self.head_select,
            query=self.query_slider, pattern=self.pattern_select, window_s=self.window_slider,
            global_s=self.global_slider, random_s=self.random_slider, block=self.block_select,
            seed_s=self.seed_slider, row_y=self.row_fig.y_range, row_title=self.row_fig.title, k_s=self.k_slider,
            n_select=self.n_select,
            weights_mapper=self.weights_mapper,
            mask_mapper=self.mask_mapper, boxes=self.boxes, mask_fig=self.mask_fig, lin_panel=self.lin_panel,
            lin_missing=self.lin_missing, caption=self.caption, memory=self.memory,
            PATTERNS=PATTERNS,
        )

    def _note(self) -> Div:
        """What the colours and the two maps mean, under the figures."""
        if self.cross:
            text = ("Colours are weights (the map scaled to its largest). Rows are the queries' tokens, columns the "
                    "keys' tokens: two different sequences, so the pattern selector, which restricts a sequence "
                    "attending to itself, is off.")
        else:
            text = ("Colours are weights (each map scaled to its largest). The right map is the head's weights "
                    "renormalised over the allowed keys: a softmax restricted to them. Masks are memlib's, "
                    "BigBird's random blocks included.")
        return Div(text=text, width=WIDTH, styles={"font-size": "85%", "color": "#555"}, name="attention_note")

    def _pattern_controls(self, pattern: str) -> None:
        """Show the sliders ``pattern`` reads, titled for it (the CustomJS does the same in the page).

        Cross-attention: every pattern control hidden but the selector, shown disabled and titled to say why."""
        if self.cross:
            self.pattern_select.update(disabled=True, title="pattern: for self-attention only (off)")
            for widget in (self.n_select, self.window_slider, self.global_slider, self.random_slider,
                           self.block_select, self.seed_slider, self.k_slider):
                widget.visible = False
            return
        bigbird, sliding = pattern == "bigbird", pattern == "sliding_window"
        self.window_slider.update(visible=bigbird or sliding, start=0 if bigbird else 1,
                                  title="window (blocks)" if bigbird else "window w (tokens)")
        self.global_slider.update(visible=bigbird or sliding,
                                  title="global blocks" if bigbird else "global tokens")
        for widget in (self.random_slider, self.block_select, self.seed_slider):
            widget.visible = bigbird
        self.k_slider.visible = pattern == "linformer"

    @staticmethod
    def _head_options(H: int) -> list[tuple[str, str]]:
        return [(str(h), f"head {h + 1}") for h in range(H)] + [("mean", f"mean of {H} heads")]

    def _apply_linformer(self, data: Prepared) -> None:
        """The Linformer maps' ranges, ticks and colour scales for ``data``'s sizes."""
        T = data["weights"].shape[2]
        lin_fig, proj_fig = self.lin_figs
        has_lin = "linformer_weights" in data
        if has_lin:
            k = data["linformer_weights"].shape[2]
            # every slot labelled while they fit, whole numbers beyond
            lin_fig.xaxis.ticker = FixedTicker(ticks=list(range(k))) if k <= 16 else BasicTicker(min_interval=1)
            proj_fig.yaxis.ticker = FixedTicker(ticks=list(range(k))) if k <= 16 else BasicTicker(min_interval=1)
            lin_fig.x_range.update(start=-0.5, end=k - 0.5)
            lin_fig.y_range.update(start=T - 0.5, end=-0.5)
            self.lin_mapper.high = max(float(data["linformer_weights"].max()), 1e-6)
            proj_fig.x_range.update(start=-0.5, end=T - 0.5)
            proj_fig.y_range.update(start=k - 0.5, end=-0.5)
            if "projection" in data:
                bound = max(float(np.abs(data["projection"]).max()), 1e-6)
                self.proj_mapper.update(low=-bound, high=bound)
        proj_fig.visible = has_lin and "projection" in data
        self._token_axes(lin_fig, T, x=False)
        self._token_axes(proj_fig, T, y=False)

    def update(self, data: Prepared) -> None:
        """Replace the data; it must be of the mode (self- or cross-attention) the explorer was built with."""
        if ("key_tokens" in data) != self.cross:
            raise ValueError(f"AttentionExplorer: expected {'cross' if self.cross else 'self'}-attention data (the "
                             "mode this explorer was built with), got "
                             f"{'cross' if 'key_tokens' in data else 'self'}-attention data")
        super().update(data)

    def on_update(self, data: Prepared) -> None:
        layer, head, q, pattern, params = self._selection(data)
        L, H, T, S = data["weights"].shape
        view = self._view(data, layer, head, q, pattern, params, self._orders_cache(T))
        self.layer_select.update(options=[(str(li), f"layer {li + 1}") for li in range(L)], value=str(layer))
        self.head_select.update(options=self._head_options(H), value=head)
        self.query_slider.update(end=max(T - 1, 1), value=q)
        self.window_slider.end = max(T - 1, 1)
        self.global_slider.end = max(T, 1)
        blocks = [str(b) for b in self._block_sizes(T)]
        self.block_select.update(options=blocks, value=str(params.block) if str(params.block) in blocks else blocks[-1])
        for fig in (self.weights_fig, self.mask_fig, self.row_fig):
            fig.x_range.update(start=-0.5, end=(T if fig is self.mask_fig else S) - 0.5)
            self._token_axes(fig, T, y=fig is not self.row_fig)
        for fig in (self.weights_fig, self.mask_fig):
            fig.y_range.update(start=T - 0.5, end=-0.5)
        for box in self.boxes:
            box.update(bottom=q - 0.5, top=q + 0.5)
        self.weights_mapper.high = max(view["top"], 1e-6)
        self.mask_mapper.high = max(view["shown_top"], 1e-6)
        self.row_fig.y_range.end = view["row_top"]
        self.row_fig.title.text = self._row_title(data, q)
        has_lin = "linformer_weights" in data
        self._pattern_controls(pattern)
        self.mask_fig.visible = pattern != "linformer" and not self.cross
        self.lin_panel.visible = pattern == "linformer" and has_lin and not self.cross
        self.lin_missing.visible = pattern == "linformer" and not has_lin and not self.cross
        self._apply_linformer(data)
        self.caption.text = self._caption(data, layer, head, q)
        self.memory.text = view["memory"]

    # Layer 3: live controls ----------------------------------------------------------------------------------

    max_words: int = MAX_TOKENS  # a text of more words is refused before the model runs: prepare would refuse it

    def live_settings(self) -> dict[str, Any]:
        """What ``compute`` receives: the live controls' values and the pattern sliders' values."""
        p = dataclasses.asdict(self.current_params())
        del p["n"]  # the report's n is not the model's business
        return {**self.settings, **p}

    def request(self, value: Any) -> dict[str, Any]:
        """:meth:`live_settings` with the changed ones in ``value`` (a dict), checked before the model runs."""
        known = self.live_settings()
        s = merge_settings(known, value, known)
        if s["pattern"] not in PATTERNS:
            raise ValueError(f"expected pattern in {list(PATTERNS)}, got {s['pattern']!r}")
        if self.cross and s["pattern"] != "full":
            raise ValueError(f"expected pattern 'full' for cross-attention, got {s['pattern']!r}")
        s["temperature"] = check_number("temperature", s["temperature"], *TEMPERATURES)
        words = len(check_text("text", s["text"], self.max_text).split())
        if words > self.max_words:
            raise Refused(f"expected at most {self.max_words} words in text (a longer map is not drawn, so the model "
                          f"is not run), got {words}")
        return s

    def accept(self, request: dict[str, Any], data: Prepared) -> None:
        if self._built and not self.cross:
            self.pattern_select.value = request["pattern"]  # the mask panel shows the pattern the model ran
        super().accept(request, data)

    def _save(self) -> dict[str, Any]:
        return {**super()._save(), "pattern": self.pattern_select.value if self._built else None}

    def _restore(self, saved: Mapping[str, Any]) -> None:
        if self._built and self.pattern_select.value != saved["pattern"]:
            self.pattern_select.value = saved["pattern"]
        super()._restore(saved)

    def controls(self) -> list:
        """A sentence, a temperature and a pattern (not for cross-attention); each change reruns ``compute``."""
        import ipywidgets

        s = self.settings
        text = ipywidgets.Text(value=s["text"], description="sentence", continuous_update=False,
                               layout=ipywidgets.Layout(width="660px"), placeholder="type a sentence and press Enter")
        low, high = TEMPERATURES
        temperature = ipywidgets.FloatSlider(value=s["temperature"], min=low, max=high, step=0.25,
                                             description="temperature", continuous_update=False,
                                             style={"description_width": "initial"})
        pattern = ipywidgets.Dropdown(options=[(label, key) for key, label in PATTERNS.items()], value=s["pattern"],
                                      description="pattern")
        pairs = [("text", text), ("temperature", temperature)]
        if not self.cross:  # no pattern for cross-attention
            pairs.append(("pattern", pattern))
        return [self.bind(key, widget) for key, widget in pairs]


def _check_rows(where: str, w: np.ndarray, axes: tuple[str, ...]) -> None:
    """Every row of ``w`` (..., keys) non-negative, summing to 1 (or all zero: a fully masked query)."""
    if w.min() < -1e-6:
        at = np.unravel_index(int(np.argmin(w)), w.shape)
        raise ValueError(f"{where}: expected non-negative weights (a softmax), got {w.min():.3g} at "
                         f"{_where(axes, at[:-1])}, key {at[-1]}")
    sums = w.sum(-1)
    bad = (np.abs(sums - 1) > ROW_TOLERANCE) & (np.abs(w).max(-1) > 1e-6)
    if bad.any():
        at = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{where}: expected each row to sum to 1 (or be all zero: a fully masked query), got "
                         f"{sums[at]:.4g} at {_where(axes, at)} ({int(bad.sum())} such rows)")


def _check_tokens(where: str, label: str, tokens: Any, n: int, what: str, max_tokens: int) -> list[str]:
    """``tokens`` as a list of ``n`` strings, or an error that says what was expected and what came."""
    if isinstance(tokens, str) or not isinstance(tokens, Sequence | np.ndarray):
        raise TypeError(f"{where}: expected {label} as a list of {n} strings, got {type(tokens).__name__}")
    tokens = list(tokens)
    bad = [k for k, t in enumerate(tokens) if not isinstance(t, str)]
    if bad:
        kind = "token" if label == "tokens" else "key token"
        raise TypeError(f"{where}: expected every {kind} a string, got {type(tokens[bad[0]]).__name__} at {bad[0]}")
    if len(tokens) != n:
        unit = "tokens" if label == "tokens" else label
        raise ValueError(f"{where}: expected {n} {unit} ({what}), got {len(tokens)}")
    if n > max_tokens:
        raise ValueError(f"{where}: expected at most max_tokens = {max_tokens} {label}, got {n}: shorten the text")
    return tokens


def _where(axes: tuple[str, ...], index: tuple) -> str:
    return ", ".join(f"{a} {int(i)}" for a, i in zip(axes, index, strict=True))


def _label_step(n: int, pixels: int) -> int:
    """Label every ``step``-th of ``n`` ticks so that each label has ``LABEL_PX`` of the ``pixels`` along the axis."""
    return max(1, math.ceil(n * LABEL_PX / max(pixels, LABEL_PX)))


def _short(token: str, width: int = 10) -> str:
    return token if len(token) <= width else token[: width - 1] + "\u2026"
