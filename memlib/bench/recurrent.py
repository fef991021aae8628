"""The ``recurrent`` suite: torch.nn against memlib's fused and reference paths, side by side.

For RNN (tanh), LSTM and GRU at every (T, H), one training step (forward, ``sum`` of the output,
backward) of three modules holding the same weights:

- ``torch``: ``torch.nn.RNN`` / ``LSTM`` / ``GRU``;
- ``fused``: memlib's module outside a trace (torch's fused kernel through ``torch._VF``);
- ``reference``: memlib's module inside ``memlib.reference_path()`` (the gates step by step in Python).

The three run interleaved within each repeat, in a rotating order, so they share the machine's
noise; a ratio is the median of the per-repeat ratios. Peak memory is one more call of each,
measured by :mod:`memlib.profiling` (it says what it counts). Targets (issue #3): fused within
1.1x of torch, reference within 4x of torch at T=200, H=256.

Shapes: ``T`` steps, ``B`` batch, ``I`` input features (= ``H``, a layer inside a stack), ``H`` hidden width.
"""

from __future__ import annotations

import contextlib
import statistics
from collections.abc import Callable

import torch
from torch import nn

from memlib.bench import Report
from memlib.claims import noise_band, target_met
from memlib.profiling import peak_memory, time_call
from memlib.recurrent import GRU, LSTM, RNN
from memlib.tracing import reference_path
from memlib.train import device, seed_everything

B = 32  # batch
STEPS = (50, 200, 1000)  # sequence lengths T
WIDTHS = (128, 256)  # hidden widths H
QUICK_STEPS, QUICK_WIDTHS = (50, 200), (256,)  # still covers the target setting
TARGET = dict(T=200, H=256, fused=1.1, reference=4.0)
FAMILIES = {"rnn": (nn.RNN, RNN), "lstm": (nn.LSTM, LSTM), "gru": (nn.GRU, GRU)}
IMPLS = ("torch", "fused", "reference")
AA = "torch A/A"  # torch.nn timed twice: the noise band a target is judged against (memlib.claims.target_met)
DEFAULT_REPEATS = 5
WARMUP = 1


def _training_step(module: nn.Module, x: torch.Tensor, context: Callable) -> Callable[[], None]:
    params = list(module.parameters())

    def step() -> None:
        for p in params:
            p.grad = None  # each call allocates its gradients: a training step's real peak
        with context():
            output, _ = module(x)  # (T, B, H)
        output.sum().backward()

    return step


def _one_setting(family: str, T: int, H: int, dev: torch.device, repeats: int) -> dict:
    torch_cls, memlib_cls = FAMILIES[family]
    seed_everything(0)
    reference = torch_cls(H, H).to(dev)
    model = memlib_cls(H, H).to(dev)
    model.load_state_dict(reference.state_dict())
    x = torch.randn(T, B, H, device=dev)  # (T, B, I)
    steps = {
        "torch": _training_step(reference, x, contextlib.nullcontext),
        "fused": _training_step(model, x, contextlib.nullcontext),
        "reference": _training_step(model, x, reference_path),
    }
    steps[AA] = steps["torch"]  # the A/A control: torch.nn's step timed a second time in the same run
    timed = (*IMPLS, AA)
    for _ in range(WARMUP):
        for step in steps.values():
            step()
    seconds: dict[str, list[float]] = {k: [] for k in timed}
    for i in range(repeats):
        shift = i % len(timed)
        for k in timed[shift:] + timed[:shift]:  # rotate which goes first
            seconds[k].append(time_call(steps[k], dev))
    aa_seconds = seconds.pop(AA)
    peaks = {k: peak_memory(steps[k], dev) for k in IMPLS}
    ratio = {
        k: statistics.median(s / t for s, t in zip(seconds[k], seconds["torch"], strict=True)) for k in IMPLS[1:]
    }
    return dict(
        family=family, T=T, H=H,
        median_ms={k: statistics.median(v) * 1e3 for k, v in seconds.items()},
        ratio_to_torch=ratio,
        aa_band=noise_band(aa_seconds, seconds["torch"]),
        peak_mib={k: peaks[k][0] / 2**20 for k in IMPLS},
        memory_method=peaks["torch"][1],
        seconds=seconds,
    )


def run(repeats: int, quick: bool = False) -> Report:
    dev = device("auto")
    steps, widths = (QUICK_STEPS, QUICK_WIDTHS) if quick else (STEPS, WIDTHS)
    rows = [_one_setting(f, T, H, dev, repeats) for f in FAMILIES for H in widths for T in steps]

    lines = [
        f"recurrent: forward+backward of one training step, B={B}, I=H, {dev}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {repeats} interleaved repeats (median ms; ratios: median of "
        f"per-repeat ratios to torch.nn); peak memory by {rows[0]['memory_method']}",
        f"{'model':<6}{'T':>6}{'H':>5} | {'torch ms':>9}{'fused ms':>9}{'ref ms':>9} | {'fused/t':>8}{'ref/t':>7} | "
        f"{'torch MiB':>10}{'fused MiB':>10}{'ref MiB':>9}",
    ]
    for r in rows:
        ms, ratio, mib = r["median_ms"], r["ratio_to_torch"], r["peak_mib"]
        lines.append(
            f"{r['family']:<6}{r['T']:>6}{r['H']:>5} | {ms['torch']:>9.1f}{ms['fused']:>9.1f}{ms['reference']:>9.1f} | "
            f"{ratio['fused']:>8.2f}{ratio['reference']:>7.2f} | "
            f"{mib['torch']:>10.1f}{mib['fused']:>10.1f}{mib['reference']:>9.1f}"
        )
    verdicts = {}
    for r in rows:
        if (r["T"], r["H"]) != (TARGET["T"], TARGET["H"]):
            continue
        for k in ("fused", "reference"):
            met = target_met(r["ratio_to_torch"][k], r["aa_band"], TARGET[k])
            verdicts[f"{r['family']}.{k}"] = met
            shown = met.upper() if met == "missed" else met
            lines.append(
                f"target {r['family']} {k} <= {TARGET[k]}x torch at T={TARGET['T']}, H={TARGET['H']}: "
                f"{r['ratio_to_torch'][k]:.2f}x, A/A band x{r['aa_band']:.2f}: {shown}"
            )
    settings = dict(batch=B, steps=list(steps), widths=list(widths), input_size="H", repeats=repeats, warmup=WARMUP,
                    threads=torch.get_num_threads(), quick=quick)
    data = dict(suite="recurrent", settings=settings, torch=torch.__version__, device=str(dev), target=TARGET,
                targets_met=verdicts, rows=rows)
    return Report("\n".join(lines), data)
