"""Argument checks shared by memlib's public functions and classes.

Every check raises ``ValueError`` (a wrong value) or ``TypeError`` (a wrong kind of object) with one message
form: ``"<where>: expected <what>, got <value>"``, where ``where`` names the public function or class the
caller called (an empty ``where`` leaves the prefix out: a live control's status line, where the reader knows
which control moved). A check returns the value it accepted (as a plain ``int`` or ``float`` for numbers), so that
``size = check_int("GRU", "size", size, low=1)`` checks and normalises in one line.

Integers are Python or NumPy integers, never bools (``True`` is an ``int`` to Python, never a size to us).

Shape legend: ``B`` batch, ``T`` time, ``I`` input size.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

import numpy as np
import torch

__all__ = [
    "check_array",
    "check_choice",
    "check_float",
    "check_heads",
    "check_input",
    "check_int",
    "check_length",
    "check_mask",
    "check_number",
    "check_shape",
    "check_sizes",
    "check_state",
    "check_state_tensor",
    "check_tensor",
    "check_text",
    "check_tokens",
    "fail",
    "is_int",
    "is_number",
]


def fail(where: str, expected: str, got: object, error: type[Exception] = ValueError) -> NoReturn:
    """Raise ``error("<where>: expected <expected>, got <got>")``; ``got`` is shown with ``str``.

    >>> fail("GRU", "hidden_size as a positive integer", repr(0))
    Traceback (most recent call last):
    ...
    ValueError: GRU: expected hidden_size as a positive integer, got 0
    >>> fail("", "temperature as a number in [0.25, 4]", 0)
    Traceback (most recent call last):
    ...
    ValueError: expected temperature as a number in [0.25, 4], got 0
    """
    raise error(f"{where}: expected {expected}, got {got}" if where else f"expected {expected}, got {got}")


def is_int(value: object) -> bool:
    """True for a Python or NumPy integer; False for a bool, a float or anything else.

    >>> is_int(3), is_int(True), is_int(3.0)
    (True, False, False)
    """
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    """True for a real number (int, float, NumPy scalar); False for a bool, a complex number or anything else.

    >>> is_number(0.5), is_number(2), is_number(False)
    (True, True, False)
    """
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _int_phrase(name: str, low: int | None, high: int | None) -> str:
    if low is not None and high is not None:
        return f"{name} as an integer in [{low}, {high}]"
    if low == 1:
        return f"{name} as a positive integer"
    if low == 0:
        return f"{name} as a non-negative integer"
    if low is not None:
        return f"{name} as an integer >= {low}"
    if high is not None:
        return f"{name} as an integer <= {high}"
    return f"{name} as an integer"


def check_int(
    where: str,
    name: str,
    value: object,
    *,
    low: int | None = None,
    high: int | None = None,
    expected: str | None = None,
    got: str | None = None,
    error: type[Exception] = ValueError,
) -> int:
    """``value`` as an ``int`` in ``[low, high]`` (either bound optional), else ``error``.

    ``expected`` replaces the generated description (``"<name> as a positive integer"``, ...) and ``got``
    replaces ``repr(value)``, for messages whose wording callers and tests rely on.

    >>> check_int("RNN", "num_layers", 2, low=1)
    2
    >>> check_int("RNN", "num_layers", True, low=1)
    Traceback (most recent call last):
    ...
    ValueError: RNN: expected num_layers as a positive integer, got True
    """
    if not is_int(value) or (low is not None and value < low) or (high is not None and value > high):  # type: ignore[operator]
        fail(where, expected or _int_phrase(name, low, high), repr(value) if got is None else got, error)
    return int(value)  # type: ignore[arg-type]


def check_sizes(where: str, **sizes: object) -> None:
    """Each keyword a positive integer (a layer or memory size).

    >>> check_sizes("NTM", input_size=4, memory_slots=0)
    Traceback (most recent call last):
    ...
    ValueError: NTM: expected memory_slots as a positive integer, got 0
    """
    for name, value in sizes.items():
        check_int(where, name, value, low=1)


def _interval(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    return f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"


def check_float(
    where: str,
    name: str,
    value: object,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    finite: bool = False,
    expected: str | None = None,
    got: str | None = None,
    error: type[Exception] = ValueError,
) -> float:
    """``value`` as a ``float``: a real number (not a bool) in the interval from ``low`` to ``high``.

    ``low_open`` / ``high_open`` exclude a bound; ``finite`` rejects inf and NaN (NaN fails every bound
    already). ``expected`` and ``got`` replace the generated wording, as in :func:`check_int`.

    >>> check_float("MultiHeadAttention", "dropout", 0.1, low=0, high=1, high_open=True)
    0.1
    >>> check_float("fits", "reserve", 1.0, low=0, high=1, high_open=True)
    Traceback (most recent call last):
    ...
    ValueError: fits: expected reserve as a number in [0, 1), got 1.0
    """
    ok = is_number(value)
    if ok:
        v = float(value)  # type: ignore[arg-type]
        ok = not (
            (finite and not math.isfinite(v))
            or (low is not None and not (v > low if low_open else v >= low))
            or (high is not None and not (v < high if high_open else v <= high))
        )
    if not ok:
        if expected is None:
            if low is not None and high is not None:
                expected = f"{name} as a number in {_interval(low, high, low_open, high_open)}"
            elif low is not None:
                expected = f"{name} as a number {'>' if low_open else '>='} {low}"
            elif high is not None:
                expected = f"{name} as a number {'<' if high_open else '<='} {high}"
            else:
                expected = f"{name} as a {'finite ' if finite else ''}number"
        fail(where, expected, repr(value) if got is None else got, error)
    return float(value)  # type: ignore[arg-type]


def check_number(
    where: str,
    name: str,
    value: object,
    low: float,
    high: float,
    *,
    expected: str | None = None,
    error: type[Exception] = ValueError,
) -> float:
    """``value`` as a ``float``: a finite real number (not a bool) in ``[low, high]``, such as a slider's.

    The bounds are written with ``:g`` (``[0.25, 4]``); ``expected`` replaces the generated wording.

    >>> check_number("GateExplorer", "forget_bias", 1, -3.0, 3.0)
    1.0
    >>> check_number("", "temperature", float("nan"), 0.25, 4.0)
    Traceback (most recent call last):
    ...
    ValueError: expected temperature as a number in [0.25, 4], got nan
    """
    return check_float(where, name, value, low=low, high=high, finite=True, error=error,
                       expected=expected or f"{name} as a number in [{low:g}, {high:g}]")


def check_text(
    where: str,
    name: str,
    value: object,
    max_chars: int | None = None,
    *,
    why: str = "",
    too_long: type[Exception] = ValueError,
) -> str:
    """``value`` if it is a ``str`` of at most ``max_chars`` characters (``None``: any length).

    A non-str raises ``TypeError``; a longer str raises ``too_long``, its message saying ``why`` in brackets.

    >>> check_text("", "input", "0110", 10)
    '0110'
    >>> check_text("", "input", "0" * 11, 10, why="longer input is not run")
    Traceback (most recent call last):
    ...
    ValueError: expected input of at most 10 characters (longer input is not run), got 11
    """
    if not isinstance(value, str):
        fail(where, f"{name} as a str", type(value).__name__, TypeError)
    if max_chars is not None and len(value) > max_chars:
        fail(where, f"{name} of at most {max_chars} characters" + (f" ({why})" if why else ""), len(value), too_long)
    return value


def check_array(where: str, value: object, ndim: int, expected: str) -> np.ndarray:
    """``value`` (a tensor, an array or nested lists) as a finite float64 NumPy array of ``ndim`` dimensions.

    ``expected`` describes the shape for the message (``"(T, H): steps x units"``). Not numbers: ``TypeError``;
    another number of dimensions or a NaN/inf entry: ``ValueError``.

    >>> check_array("GateExplorer.prepare: forget", torch.zeros(3, 2), 2, "(T, H)").shape
    (3, 2)
    >>> check_array("GateExplorer.prepare: forget", [1.0, float("nan")], 1, "(T,)")
    Traceback (most recent call last):
    ...
    ValueError: GateExplorer.prepare: forget: expected finite values, got 1 NaN/inf entries
    """
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        arr = None  # raised below, outside the handler: the message says it all
    if arr is None:
        fail(where, f"numbers of shape {expected}", type(value).__name__, TypeError)
    if arr.ndim != ndim:
        fail(where, f"shape {expected}", arr.shape)
    if not np.isfinite(arr).all():
        fail(where, "finite values", f"{int((~np.isfinite(arr)).sum())} NaN/inf entries")
    return arr


def check_length(where: str, name: str, value: object, minimum: int = 1) -> int:
    """``value`` as an ``int`` >= ``minimum``: a length, a width or a count of heads or blocks.

    >>> check_length("causal_mask", "Tq", 4)
    4
    >>> check_length("window_mask", "window", -1, minimum=0)
    Traceback (most recent call last):
    ...
    ValueError: window_mask: expected window as an integer >= 0, got -1
    """
    return check_int(where, name, value, low=minimum, expected=f"{name} as an integer >= {minimum}")


def check_heads(where: str, embed_dim: object, num_heads: object, dropout: object) -> None:
    """The checks every multi-head attention module makes of its size arguments.

    >>> check_heads("MultiHeadAttention", 8, 2, 0.0)
    >>> check_heads("MultiHeadAttention", 8, 3, 0.0)
    Traceback (most recent call last):
    ...
    ValueError: MultiHeadAttention: expected embed_dim divisible by num_heads, got 8 and 3
    """
    check_length(where, "embed_dim", embed_dim)
    check_length(where, "num_heads", num_heads)
    if embed_dim % num_heads:  # type: ignore[operator]
        fail(where, "embed_dim divisible by num_heads", f"{embed_dim} and {num_heads}")
    check_float(where, "dropout", dropout, low=0, high=1, high_open=True,
                expected="dropout as a probability in [0, 1)")


def check_mask(where: str, name: str, mask: object) -> torch.Tensor:
    """``mask`` if it is a boolean (True = blocked) or floating-point (added to the scores) tensor.

    >>> check_mask("MultiHeadAttention", "attn_mask", torch.ones(2, 2, dtype=torch.bool)).dtype
    torch.bool
    >>> check_mask("MultiHeadAttention", "attn_mask", torch.ones(2, 2, dtype=torch.long))
    Traceback (most recent call last):
    ...
    TypeError: MultiHeadAttention: expected attn_mask of dtype torch.bool or floating point, got torch.int64
    """
    if not isinstance(mask, torch.Tensor):
        fail(where, f"{name} as a tensor", type(mask).__name__, TypeError)
    if mask.dtype != torch.bool and not mask.is_floating_point():
        fail(where, f"{name} of dtype torch.bool or floating point", mask.dtype, TypeError)
    return mask


def check_tokens(where: str, tokens: object, vocab_size: int) -> torch.Tensor:
    """``tokens`` if it is a non-empty ``torch.long`` tensor (B, T) of ids in ``[0, vocab_size)``.

    >>> check_tokens("CausalLM", torch.tensor([[1, 2, 3]]), 4).shape
    torch.Size([1, 3])
    >>> check_tokens("CausalLM", torch.tensor([[1, 2, 7]]), 4)
    Traceback (most recent call last):
    ...
    ValueError: CausalLM: expected token ids in [0, 4), got min 1, max 7
    """
    if not isinstance(tokens, torch.Tensor) or tokens.dtype != torch.long:
        got = tokens.dtype if isinstance(tokens, torch.Tensor) else type(tokens).__name__
        fail(where, "tokens as a torch.long tensor (B, T)", got, TypeError)
    if tokens.dim() != 2 or 0 in tokens.shape:
        fail(where, "tokens of a non-empty shape (B, T)", tuple(tokens.shape))
    if tokens.min() < 0 or tokens.max() >= vocab_size:
        fail(where, f"token ids in [0, {vocab_size})", f"min {int(tokens.min())}, max {int(tokens.max())}")
    return tokens


def check_choice(where: str, name: str, value: object, choices: Sequence[Any]) -> Any:
    """``value`` if it is one of ``choices``, else ``ValueError``.

    >>> check_choice("estimate_training_memory", "optimizer", "adam", ("sgd", "adam"))
    'adam'
    >>> check_choice("estimate_training_memory", "optimizer", "lion", ("sgd", "adam"))
    Traceback (most recent call last):
    ...
    ValueError: estimate_training_memory: expected optimizer one of 'sgd', 'adam', got 'lion'
    """
    if value not in choices:
        fail(where, f"{name} one of {', '.join(map(repr, choices))}", repr(value))
    return value


def check_tensor(where: str, name: str, x: object, shapes: str) -> torch.Tensor:
    """``x`` if it is a floating-point tensor (any shape; ``shapes`` describes the expected one).

    >>> check_tensor("scaled_dot_product_attention", "q", torch.zeros(2, 3), "(B, T, D)").shape
    torch.Size([2, 3])
    >>> check_tensor("scaled_dot_product_attention", "q", torch.zeros(2, dtype=torch.long), "(B, T, D)")
    Traceback (most recent call last):
    ...
    TypeError: scaled_dot_product_attention: expected a floating-point q, got torch.int64
    """
    if not isinstance(x, torch.Tensor):
        fail(where, f"{name} as a tensor {shapes}", type(x).__name__, TypeError)
    if not x.is_floating_point():
        fail(where, f"a floating-point {name}", x.dtype, TypeError)
    return x


def check_shape(where: str, name: str, x: object, legend: str, shape: tuple[int | None, ...]) -> torch.Tensor:
    """``x`` if it is a floating-point tensor of ``shape`` (``None`` matches any size); ``legend`` names the dims.

    >>> check_shape("read", "weights", torch.zeros(2, 1, 8), "(B, H, N)", (2, None, 8)).shape
    torch.Size([2, 1, 8])
    >>> check_shape("read", "weights", torch.zeros(2, 8), "(B, H, N)", (2, None, 8))
    Traceback (most recent call last):
    ...
    ValueError: read: expected weights of shape (B, H, N) = (2, ?, 8), got (2, 8)
    """
    shown = "(" + ", ".join("?" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
    if not isinstance(x, torch.Tensor):
        fail(where, f"{name} as a tensor of shape {legend} = {shown}", type(x).__name__, TypeError)
    if not x.is_floating_point():
        fail(where, f"{name} as a floating-point tensor", x.dtype, TypeError)
    if x.dim() != len(shape) or any(s is not None and s != n for s, n in zip(shape, x.shape, strict=False)):
        fail(where, f"{name} of shape {legend} = {shown}", tuple(x.shape))
    return x


def check_input(
    where: str,
    x: object,
    input_size: int,
    *,
    dims: tuple[int, ...],
    shapes: str,
    dtype: torch.dtype,
    size_label: str = "",
    nonempty: str = "batch and sequence",
) -> torch.Tensor:
    """``x`` if it is a non-empty floating-point input of the weights' ``dtype``, with ``dims`` dimensions
    (described by ``shapes``) and ``input_size`` features in its last one. ``size_label`` prefixes the size
    in the message (``"I = "``) and ``nonempty`` names the leading dims.

    >>> x = torch.zeros(2, 3, 4)
    >>> check_input("NTM", x, 4, dims=(3,), shapes="(B, T, I)", dtype=torch.float32).shape
    torch.Size([2, 3, 4])
    >>> check_input("NTM", x, 5, dims=(3,), shapes="(B, T, I)", dtype=torch.float32, size_label="I = ")
    Traceback (most recent call last):
    ...
    ValueError: NTM: expected input of size I = 5, got 4
    """
    if not isinstance(x, torch.Tensor):
        fail(where, f"input as a tensor {shapes}", type(x).__name__, TypeError)
    if not x.is_floating_point():
        fail(where, "a floating-point input", x.dtype, TypeError)
    if x.dtype != dtype:
        fail(where, f"input of dtype {dtype} (the weights' dtype)", x.dtype, TypeError)
    if x.dim() not in dims:
        fail(where, f"input of shape {shapes}", f"{x.dim()}-D shape {tuple(x.shape)}")
    if x.shape[-1] != input_size:
        fail(where, f"input of size {size_label}{input_size}", x.shape[-1])
    if 0 in x.shape[:-1]:
        fail(where, f"a non-empty {nonempty}", f"input of shape {tuple(x.shape)}")
    return x


def check_state_tensor(
    where: str, name: str, h: object, shape: tuple[int, ...], like: torch.Tensor
) -> torch.Tensor:
    """``h`` if it is a state tensor of ``shape`` with the dtype and device of ``like`` (the input).

    >>> x = torch.zeros(2, 4)
    >>> check_state_tensor("GRUCell", "hx", torch.zeros(2, 3), (2, 3), x).shape
    torch.Size([2, 3])
    >>> check_state_tensor("GRUCell", "hx", torch.zeros(2, 5), (2, 3), x)
    Traceback (most recent call last):
    ...
    ValueError: GRUCell: expected hx of shape (2, 3), got (2, 5)
    """
    if not isinstance(h, torch.Tensor):
        fail(where, f"{name} as a tensor of shape {shape}", type(h).__name__, TypeError)
    if tuple(h.shape) != tuple(shape):
        fail(where, f"{name} of shape {tuple(shape)}", tuple(h.shape))
    if h.dtype != like.dtype:
        fail(where, f"{name} of dtype {like.dtype} (the input's)", h.dtype, TypeError)
    if h.device != like.device:
        fail(where, f"{name} on {like.device} (the input's device)", h.device)
    return h


def check_state(where: str, state: object, cls: type, shapes: Mapping[str, object], like: torch.Tensor) -> Any:
    """``state`` if it is a ``cls`` NamedTuple whose every tensor passes :func:`check_state_tensor`.

    ``shapes[field]`` is a shape, or a tuple of shapes for a field that holds a tuple of tensors.

    >>> from typing import NamedTuple
    >>> class State(NamedTuple):
    ...     memory: torch.Tensor
    >>> x = torch.zeros(2, 4)
    >>> check_state("NTM", State(torch.zeros(2, 8, 3)), State, {"memory": (2, 8, 3)}, x).memory.shape
    torch.Size([2, 8, 3])
    >>> check_state("NTM", State(torch.zeros(2, 8)), State, {"memory": (2, 8, 3)}, x)
    Traceback (most recent call last):
    ...
    ValueError: NTM: expected state.memory of shape (2, 8, 3), got (2, 8)
    """
    if not isinstance(state, cls):
        fail(where, f"state as a {cls.__name__}", type(state).__name__, TypeError)
    for field in cls._fields:  # type: ignore[attr-defined]
        value, shape = getattr(state, field), shapes[field]
        nested = isinstance(value, tuple)
        values, wanted = (value, shape) if nested else ((value,), (shape,))
        if len(values) != len(wanted):  # type: ignore[arg-type]
            fail(where, f"state.{field} with {len(wanted)} tensors", len(values))  # type: ignore[arg-type]
        for k, (v, want) in enumerate(zip(values, wanted, strict=True)):  # type: ignore[call-overload]
            check_state_tensor(where, f"state.{field}" + (f"[{k}]" if nested else ""), v, tuple(want), like)
    return state
