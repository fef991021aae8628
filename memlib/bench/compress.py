"""The ``compress`` suite: what each technique of :mod:`memlib.compress` saves, measured side by side.

Two tables.

**Models** (inference): small classifiers trained on scikit-learn's digits (1,797 8x8 images, shipped with
scikit-learn, no download), one seeded split (450 test images; one accuracy point is 4.5 images):

- ``mlp``: :class:`~memlib.compress.QuantizableMLP` 64-256-256-10 (the baseline), then the same trained
  model pruned (50% unstructured L1 of every weight matrix, with and without fine-tuning; 50% of the hidden
  layers' rows (units), structured, fine-tuned: zeros in a dense matrix, nothing removed),
  quantized to int8 (dynamic; static with calibration on training images; quantization-aware training
  from the baseline), and factorised to low rank (the two hidden layers at each of ``RANKS``, without
  fine-tuning: the accuracy-size curve);
- ``student``: a 64-32-10 MLP trained by distillation from the baseline (Hinton et al. 2015, T = 4,
  alpha = 0.9), and the same student (same initial weights, steps and learning rate) trained on the labels
  alone;
- ``lstm``: :class:`~memlib.hybrid.SequenceClassifier` (LSTM, hidden 256) reading an image row by row
  (8 steps of 8 pixels), float and dynamically quantized to int8.

For each: weights (:func:`~memlib.compress.count_parameters`; non-zero ones), bytes of the saved state_dict
(:func:`~memlib.compress.size_on_disk`; pruned models after :func:`~memlib.compress.make_permanent`, so dense),
peak memory of one forward pass over the test set (:mod:`memlib.profiling`: it says what it counts), the median
latency of that forward pass (all models interleaved in each repeat), and test accuracy.

**Training** (one step: forward, loss, backward): a 24-layer :class:`~memlib.transformer.TransformerEncoder`
plain, with :func:`~memlib.compress.enable_checkpointing` over its layers, and under bfloat16 autocast; an LSTM
over long sequences plain and checkpointed in time chunks. For each: median step time (the variants of a model
interleaved; the ratio is the median of per-repeat ratios), the step's peak memory, and the memory the forward
pass keeps for the backward pass (net tensor bytes still held when the forward returns, output included,
counted by torch's profiler as :mod:`memlib.profiling` does): activation memory, what checkpointing cuts.

Targets (issue #8): checkpointing cuts the 24-layer model's activation memory at least 3x for at most 40% more
time per step; dynamic int8 quantization of the LSTM classifier at least 3.5x smaller (saved weights) with
accuracy within 1 point; 50% unstructured pruning with fine-tuning within 1 point.

Runs on one thread (``THREADS``), on the CPU: quantized kernels are CPU-only.
"""

from __future__ import annotations

import copy
import statistics
from collections.abc import Callable
from functools import cache

import torch
import torch.nn.functional as F
from torch import nn

import memlib.compress as C
from memlib import capability
from memlib.bench import Report, torch_threads
from memlib.claims import noise_band, target_met
from memlib.hybrid import SequenceClassifier
from memlib.profiling import native_stderr_silenced, peak_memory, time_call
from memlib.train import fit, seed_everything
from memlib.transformer import TransformerEncoder, TransformerEncoderLayer

DEFAULT_REPEATS = 5
THREADS = 1
SEED = 0
TEST = 450  # test images
BATCH, LR = 64, 1e-3
MLP_SIZES, STUDENT_SIZES = (64, 256, 256, 10), (64, 32, 10)
LSTM_HIDDEN = 256
STEPS = dict(mlp=800, lstm=600, fine_tune=300, qat=200, student=800)
QUICK_STEPS = dict(mlp=150, lstm=100, fine_tune=50, qat=30, student=150)
FINE_TUNE_LR = 5e-4
PRUNE_AMOUNT = 0.5
RANKS, QUICK_RANKS = (4, 8, 16, 32), (8, 32)
LOW_RANK_LAYERS = ("layers.0.0", "layers.1.0")  # the hidden layers, 256x64 and 256x256
TEMPERATURE, ALPHA, STUDENT_LR = 4.0, 0.9, 3e-3
# The training table: (layers, d_model, nhead, dim_feedforward, batch, length)
DEEP = dict(layers=24, d_model=128, nhead=4, dim_feedforward=512, batch=8, length=128)
QUICK_DEEP = dict(layers=24, d_model=32, nhead=2, dim_feedforward=64, batch=4, length=32)
LONG = dict(hidden=128, batch=16, length=1024, chunk=128)
QUICK_LONG = dict(hidden=32, batch=4, length=128, chunk=16)
TARGETS = dict(checkpoint_memory=3.0, checkpoint_time=1.4, quantized_size=3.5, quantized_points=1.0, pruned_points=1.0)


# ---------------------------------------------------------------------------------------------
# Data and training.
# ---------------------------------------------------------------------------------------------


@cache
def _digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_train (N, 64), y_train, x_test (TEST, 64), y_test): pixels scaled to [0, 1], one seeded split."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.as_tensor(digits.data, dtype=torch.float32) / 16.0
    y = torch.as_tensor(digits.target, dtype=torch.int64)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(SEED))
    test, train = order[:TEST], order[TEST:]
    return x[train], y[train], x[test], y[test]


def _batches(rows: bool = False) -> Callable[[int], tuple[torch.Tensor, torch.Tensor]]:
    """The training batch of a step (seeded by the step); ``rows``: images as 8 steps of 8 pixels."""
    x, y, _, _ = _digits()

    def batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        i = torch.randint(len(y), (BATCH,), generator=torch.Generator().manual_seed(SEED * 100_003 + step))
        return (x[i].view(-1, 8, 8) if rows else x[i]), y[i]

    return batch


def _cross_entropy(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    x, y = batch
    return F.cross_entropy(model(x), y)


def _train(model: nn.Module, steps: int, rows: bool = False, lr: float = LR) -> nn.Module:
    fit(model, _batches(rows), _cross_entropy, steps=steps, lr=lr, progress=False)
    return model.eval()


def _models(steps: dict[str, int], ranks: tuple[int, ...]) -> list[dict]:
    """Every trained model of the models table: dict(model, technique, module, rows)."""
    x_train = _digits()[0]
    seed_everything(SEED)
    base = _train(C.QuantizableMLP(MLP_SIZES), steps["mlp"])
    out = [dict(model="mlp", technique="float32 (baseline)", module=base)]

    pruned = C.prune(copy.deepcopy(base), PRUNE_AMOUNT)
    out.append(dict(model="mlp", technique=f"prune {PRUNE_AMOUNT:.0%} L1", module=C.make_permanent(C.clone(pruned))))
    C.fine_tune(pruned, _batches(), _cross_entropy, steps=steps["fine_tune"], lr=FINE_TUNE_LR, progress=False)
    out.append(
        dict(model="mlp", technique=f"prune {PRUNE_AMOUNT:.0%} L1 + fine-tune", module=C.make_permanent(pruned).eval())
    )
    rows_pruned = C.clone(base)
    hidden = [(rows_pruned.get_submodule(name), "weight") for name in LOW_RANK_LAYERS]  # not the classifier's rows
    C.prune(rows_pruned, PRUNE_AMOUNT, structured=True, weights=hidden)
    C.fine_tune(rows_pruned, _batches(), _cross_entropy, steps=steps["fine_tune"], lr=FINE_TUNE_LR, progress=False)
    out.append(
        dict(
            model="mlp",
            technique=f"prune {PRUNE_AMOUNT:.0%} hidden rows + ft",
            module=C.make_permanent(rows_pruned).eval(),
        )
    )

    out.append(dict(model="mlp", technique="int8 dynamic", module=C.quantize_dynamic(base)))
    calibration = [x_train[i : i + 256] for i in range(0, 1024, 256)]
    out.append(dict(model="mlp", technique="int8 static", module=C.quantize_static(base, calibration)))
    qat = C.prepare_qat(base)
    fit(qat, _batches(), _cross_entropy, steps=steps["qat"], lr=FINE_TUNE_LR, progress=False)
    out.append(dict(model="mlp", technique="int8 QAT", module=C.convert_qat(qat)))

    for r in ranks:
        out.append(
            dict(
                model="mlp", technique=f"low rank r={r}", module=C.low_rank(base, rank=r, layers=LOW_RANK_LAYERS).eval()
            )
        )

    seed_everything(SEED)
    student = C.QuantizableMLP(STUDENT_SIZES)
    scratch = copy.deepcopy(student)
    C.distill(
        student,
        base,
        _batches(),
        steps=steps["student"],
        temperature=TEMPERATURE,
        alpha=ALPHA,
        lr=STUDENT_LR,
        progress=False,
    )
    out.append(dict(model="student", technique=f"distilled T={TEMPERATURE:g}", module=student.eval()))
    out.append(dict(model="student", technique="labels only", module=_train(scratch, steps["student"], lr=STUDENT_LR)))

    seed_everything(SEED)
    lstm = _train(SequenceClassifier("lstm", 8, LSTM_HIDDEN, 10), steps["lstm"], rows=True)
    out.append(dict(model="lstm", technique="float32", module=lstm, rows=True))
    out.append(dict(model="lstm", technique="int8 dynamic", module=C.quantize_dynamic(lstm), rows=True))
    return out


# ---------------------------------------------------------------------------------------------
# Measurements.
# ---------------------------------------------------------------------------------------------


def _accuracy(module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (module(x).argmax(1) == y).float().mean().item() * 100


def _measure_models(entries: list[dict], repeats: int) -> list[dict]:
    _, _, x_test, y_test = _digits()
    calls = []
    for e in entries:
        x = x_test.view(-1, 8, 8) if e.get("rows") else x_test

        def forward(m=e["module"], x=x) -> None:
            with torch.no_grad():
                m(x)

        calls.append(forward)
    for call in calls:  # warm-up
        call()
    seconds: list[list[float]] = [[] for _ in entries]
    for i in range(repeats):
        order = list(range(len(entries)))
        order = order[i % len(order) :] + order[: i % len(order)]
        for k in order:
            seconds[k].append(time_call(calls[k]))
    rows = []
    for e, call, s in zip(entries, calls, seconds, strict=True):
        x = x_test.view(-1, 8, 8) if e.get("rows") else x_test
        peak, method = peak_memory(call)
        rows.append(
            dict(
                model=e["model"],
                technique=e["technique"],
                parameters=C.count_parameters(e["module"]),
                nonzero=C.count_parameters(e["module"], nonzero=True),
                disk_bytes=C.size_on_disk(e["module"]),
                peak_mib=peak / 2**20,
                memory_method=method,
                median_ms=statistics.median(s) * 1e3,
                seconds=s,
                accuracy=_accuracy(e["module"], x, y_test),
            )
        )
    return rows


def _kept_after_forward(fn: Callable[[], object]) -> int:
    """Net bytes of CPU tensor memory ``fn`` leaves allocated (its result kept alive while counting)."""
    from torch.profiler import ProfilerActivity, profile

    held = []
    with native_stderr_silenced(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        held.append(fn())
    events = [
        e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]" and e.device_type().name == "CPU"
    ]
    kept = sum(e.nbytes() for e in events)
    held.clear()
    return max(0, kept)


def _training_variants(deep: dict, long: dict) -> list[dict]:
    """(model, variant, forward, step) for each training variant; the variants of a model share weights."""
    seed_everything(SEED)
    layer = TransformerEncoderLayer(
        deep["d_model"], deep["nhead"], deep["dim_feedforward"], dropout=0.0, batch_first=True
    )
    plain = TransformerEncoder(layer, deep["layers"])
    checkpointed = C.enable_checkpointing(copy.deepcopy(plain))
    x = torch.randn(deep["batch"], deep["length"], deep["d_model"])  # (B, T, D)
    name = f"transformer L={deep['layers']}"

    seed_everything(SEED)
    lstm = SequenceClassifier("lstm", 8, long["hidden"], 10)
    chunked = C.enable_checkpointing(copy.deepcopy(lstm), time_chunk=long["chunk"])
    seq = torch.randn(long["batch"], long["length"], 8)  # (B, T, I)
    labels = torch.randint(10, (long["batch"],))
    lname = f"lstm T={long['length']}"

    def make(model: nn.Module, inp: torch.Tensor, loss: Callable, amp: bool = False) -> tuple[Callable, Callable]:
        params = list(model.parameters())

        def forward():
            with C.autocast("cpu", enabled=amp):
                return loss(model(inp))

        def clear() -> None:
            # Called before each measured step, not inside it: gradients freed during the measured call would
            # count as negative allocations and make the step's peak read too low.
            for p in params:
                p.grad = None

        def step() -> None:
            forward().backward()  # allocates its gradients afresh after clear(): a training step's real peak

        return forward, step, clear

    def mean_square(out: torch.Tensor) -> torch.Tensor:
        return out.float().pow(2).mean()

    def cross_entropy(out: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(out.float(), labels)

    variants = [
        (name, "plain", *make(plain, x, mean_square)),
        (name, "checkpointed", *make(checkpointed, x, mean_square)),
        (name, "bf16 autocast", *make(plain, x, mean_square, amp=True)),
        (lname, "plain", *make(lstm, seq, cross_entropy)),
        (lname, f"time chunks of {long['chunk']}", *make(chunked, seq, cross_entropy)),
    ]
    return [dict(model=m, variant=v, forward=f, step=s, clear=c) for m, v, f, s, c in variants]


def _measure_training(deep: dict, long: dict, repeats: int) -> list[dict]:
    variants = _training_variants(deep, long)
    for v in variants:
        v["clear"]()
        v["step"]()  # warm-up
    seconds: list[list[float]] = [[] for _ in variants]
    by_model: dict[str, list[int]] = {}
    for k, v in enumerate(variants):
        by_model.setdefault(v["model"], []).append(k)
    aa: dict[str, list[float]] = {model: [] for model in by_model}  # each model's first variant timed twice
    for i in range(repeats):
        for model, ks in by_model.items():  # the variants of one model interleaved, in a rotating order
            timed = [*ks, None]  # None: the A/A control, the first variant again
            for k in timed[i % len(timed) :] + timed[: i % len(timed)]:
                v = variants[ks[0] if k is None else k]
                v["clear"]()
                (aa[model] if k is None else seconds[k]).append(time_call(v["step"]))
    rows = []
    for k, v in enumerate(variants):
        first = by_model[v["model"]][0]
        v["clear"]()
        peak, method = peak_memory(v["step"])
        rows.append(
            dict(
                model=v["model"],
                variant=v["variant"],
                median_ms=statistics.median(seconds[k]) * 1e3,
                time_ratio=statistics.median(a / b for a, b in zip(seconds[k], seconds[first], strict=True)),
                step_peak_mib=peak / 2**20,
                memory_method=method,
                activation_mib=_kept_after_forward(v["forward"]) / 2**20,
                aa_band=noise_band(aa[v["model"]], seconds[first]),
                seconds=seconds[k],
            )
        )
    for row in rows:
        base = next(r for r in rows if r["model"] == row["model"])
        row["activation_ratio"] = base["activation_mib"] / row["activation_mib"]
        row["peak_ratio"] = base["step_peak_mib"] / row["step_peak_mib"]
    return rows


# ---------------------------------------------------------------------------------------------
# The suite.
# ---------------------------------------------------------------------------------------------


def _verdicts(model_rows: list[dict], train_rows: list[dict], deep: dict) -> tuple[dict[str, str], list[str]]:
    """Each target: "met", "missed", or (a time limit inside the A/A band) "within noise"; and the lines."""
    def find(model: str, technique: str) -> dict:
        return next(r for r in model_rows if r["model"] == model and r["technique"] == technique)

    verdicts, lines = {}, []
    ck = next(r for r in train_rows if r["variant"] == "checkpointed")
    # memory is counted, time is judged against the A/A band: met, missed, or within noise
    timing = target_met(ck["time_ratio"], ck["aa_band"], TARGETS["checkpoint_time"])
    met = "missed" if ck["activation_ratio"] < TARGETS["checkpoint_memory"] else timing
    verdicts["checkpointing"] = met
    lines.append(
        f"target checkpointing ({deep['layers']} layers): activations cut >= {TARGETS['checkpoint_memory']:g}x for "
        f"<= {TARGETS['checkpoint_time']:g}x time: {ck['activation_ratio']:.1f}x less (step peak "
        f"{ck['peak_ratio']:.1f}x less) for {ck['time_ratio']:.2f}x time (A/A band x{ck['aa_band']:.2f}), "
        f"{met.upper() if met == 'missed' else met}"
    )
    lf, lq = find("lstm", "float32"), find("lstm", "int8 dynamic")
    size = lf["disk_bytes"] / lq["disk_bytes"]
    drop = lf["accuracy"] - lq["accuracy"]
    met = "met" if size >= TARGETS["quantized_size"] and drop <= TARGETS["quantized_points"] else "missed"
    verdicts["dynamic_quantization"] = met
    lines.append(
        f"target int8 dynamic LSTM: >= {TARGETS['quantized_size']:g}x smaller, accuracy within "
        f"{TARGETS['quantized_points']:g} point: {size:.2f}x smaller, {lf['accuracy']:.2f}% -> {lq['accuracy']:.2f}%, "
        f"{met.upper() if met == 'missed' else met}"
    )
    base = find("mlp", "float32 (baseline)")
    pruned = find("mlp", f"prune {PRUNE_AMOUNT:.0%} L1 + fine-tune")
    drop = base["accuracy"] - pruned["accuracy"]
    met = "met" if drop <= TARGETS["pruned_points"] else "missed"
    verdicts["pruning"] = met
    lines.append(
        f"target {PRUNE_AMOUNT:.0%} unstructured pruning + fine-tune within {TARGETS['pruned_points']:g} point: "
        f"{base['accuracy']:.2f}% -> {pruned['accuracy']:.2f}%, {met.upper() if met == 'missed' else met}"
    )
    return verdicts, lines


def run(repeats: int, quick: bool = False) -> Report:
    steps, ranks = (QUICK_STEPS, QUICK_RANKS) if quick else (STEPS, RANKS)
    deep, long = (QUICK_DEEP, QUICK_LONG) if quick else (DEEP, LONG)
    with torch_threads(THREADS), capability.fallbacks() as fallbacks:
        threads = torch.get_num_threads()
        model_rows = _measure_models(_models(steps, ranks), repeats)
        train_rows = _measure_training(deep, long, repeats)
    verdicts, target_lines = _verdicts(model_rows, train_rows, deep)

    base = model_rows[0]
    lines = [
        f"compress: models trained on sklearn digits ({TEST} test images), inference on the whole test set; cpu, "
        f"torch {torch.__version__}, {threads} thread(s), {repeats} interleaved repeats (median ms); peak memory by "
        f"{base['memory_method']}; disk: saved state_dict",
        f"{'model':<8}{'technique':<28}{'weights':>9}{'nonzero':>9}{'disk KiB':>10}{'size x':>8}{'peak MiB':>10}"
        f"{'ms':>8}{'acc %':>8}",
    ]
    for r in model_rows:
        ref = next(b for b in model_rows if b["model"] == r["model"])
        lines.append(
            f"{r['model']:<8}{r['technique']:<28}{r['parameters']:>9}{r['nonzero']:>9}{r['disk_bytes'] / 1024:>10.1f}"
            f"{ref['disk_bytes'] / r['disk_bytes']:>8.2f}{r['peak_mib']:>10.2f}{r['median_ms']:>8.2f}"
            f"{r['accuracy']:>8.2f}"
        )
    lines += [
        "",
        f"training step (forward, loss, backward): transformer B={deep['batch']} T={deep['length']} "
        f"D={deep['d_model']} F={deep['dim_feedforward']}; lstm hidden {long['hidden']} B={long['batch']}; "
        "activations: bytes the forward pass keeps for backward",
        f"{'model':<18}{'variant':<20}{'ms':>9}{'time x':>8}{'peak MiB':>10}{'less x':>8}{'act MiB':>10}{'less x':>8}",
    ]
    for r in train_rows:
        lines.append(
            f"{r['model']:<18}{r['variant']:<20}{r['median_ms']:>9.1f}{r['time_ratio']:>8.2f}{r['step_peak_mib']:>10.1f}"
            f"{r['peak_ratio']:>8.2f}{r['activation_mib']:>10.1f}{r['activation_ratio']:>8.2f}"
        )
    # the path a half-precision variant took where this CPU's fused kernel could not run it (memlib.capability)
    lines += [f"path: {note}" for note in fallbacks]
    lines += [""] + target_lines
    settings = dict(
        threads=threads,
        repeats=repeats,
        quick=quick,
        seed=SEED,
        test_images=TEST,
        batch=BATCH,
        lr=LR,
        steps=steps,
        fine_tune_lr=FINE_TUNE_LR,
        prune_amount=PRUNE_AMOUNT,
        ranks=list(ranks),
        low_rank_layers=list(LOW_RANK_LAYERS),
        mlp=list(MLP_SIZES),
        student=list(STUDENT_SIZES),
        lstm_hidden=LSTM_HIDDEN,
        temperature=TEMPERATURE,
        alpha=ALPHA,
        student_lr=STUDENT_LR,
        deep=deep,
        long=long,
    )
    data = dict(
        suite="compress",
        settings=settings,
        torch=torch.__version__,
        device="cpu",
        targets=TARGETS,
        targets_met=verdicts,
        model_rows=model_rows,
        training_rows=train_rows,
        kernel_fallbacks=list(fallbacks),
    )
    return Report("\n".join(lines), data)
