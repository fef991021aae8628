"""memlib.hardware on the meta device: the same counts as on the CPU for small configurations (parameters, gradients,
optimizer state, activations, peaks), the published configurations' sizes, and the inference estimate."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import memlib
from memlib.hardware import (
    GPT,
    GPU,
    PUBLISHED_PARAMETERS,
    Bert,
    Evoformer,
    InferenceEstimate,
    bert,
    both_outputs_loss,
    estimate_inference_memory,
    estimate_training_memory,
    evoformer,
    gpt3,
    largest_batch,
)
from memlib.profiling import peak_memory

GiB = 2**30


def _encoder() -> nn.Module:
    layer = memlib.TransformerEncoderLayer(32, 4, 64, dropout=0.1, batch_first=True)
    return memlib.TransformerEncoder(layer, 2)


def _tokens(device: str = "cpu") -> torch.Tensor:
    return torch.zeros(4, 16, dtype=torch.long, device=device)


# name -> (builder, example input on the CPU, loss); the Transformers train with dropout 0.1, which sends CPU
# attention to the math path, the path the meta device takes
SMALL = {
    "mlp": (lambda: nn.Sequential(nn.Linear(32, 128), nn.ReLU(), nn.Linear(128, 10)), (16, 32), None),
    "encoder": (_encoder, (4, 16, 32), None),
    "bert": (lambda: Bert(vocab_size=100, d_model=32, layers=2, heads=4, d_ff=64, max_len=16), _tokens(), None),
    "gpt": (lambda: GPT(vocab_size=100, d_model=32, layers=2, heads=4, max_len=16), _tokens(), None),
    "evoformer": (
        lambda: Evoformer(blocks=2, c_m=16, c_z=8, heads_msa=2, heads_pair=2, c=4, c_opm=4, c_mul=8),
        ((2, 3, 6, 16), (2, 6, 6, 8)),
        both_outputs_loss,
    ),
}


def _pair(name: str):
    make, example, loss = SMALL[name]
    cpu = make()
    with torch.device("meta"):
        meta = make()
    on_meta = example.to("meta") if isinstance(example, torch.Tensor) else example
    options = {"loss_fn": loss} if loss is not None else {}
    return cpu, example, meta, on_meta, options


@pytest.mark.parametrize("name", sorted(SMALL))
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_meta_counts_equal_the_cpu_counts(name, optimizer):
    cpu, example, meta, on_meta, options = _pair(name)
    a = estimate_training_memory(cpu, example, optimizer, **options)
    b = estimate_training_memory(meta, on_meta, optimizer, **options)
    assert (a.parameters, a.gradients, a.activations, a.activations_fixed) == (
        b.parameters, b.gradients, b.activations, b.activations_fixed
    )
    # Adam's step counters live on the CPU only (a meta model stands for one trained on a GPU)
    counters = 4 * sum(1 for p in cpu.parameters() if p.requires_grad) if optimizer == "adam" else 0
    assert a.optimizer_state == b.optimizer_state + counters
    assert b.notes and "meta device" in b.notes[0]


@pytest.mark.parametrize("name", sorted(SMALL))
def test_tracked_peak_equals_the_profilers(name):
    cpu, example, *_ = _pair(name)
    loss_fn = SMALL[name][2] or memlib.hardware.default_loss
    inputs = memlib.hardware._as_inputs("test", cpu, example)
    weights = list(cpu.parameters())

    def forward_backward():
        loss = loss_fn(cpu(*(x.clone() for x in inputs)))
        torch.autograd.grad(loss, weights, allow_unused=True)

    live = memlib.hardware._LiveBytes()
    with live:
        forward_backward()
    profiled = peak_memory(forward_backward)[0]
    assert abs(live.peak - profiled) <= 0.01 * profiled, (live.peak, profiled)
    assert live.now == 0  # every storage the pass made was freed and subtracted


@pytest.mark.parametrize("name", ["mlp", "evoformer"])
def test_inference_on_meta_equals_the_cpu_where_the_kernels_agree(name):
    cpu, example, meta, on_meta, _ = _pair(name)
    a, b = estimate_inference_memory(cpu, example), estimate_inference_memory(meta, on_meta)
    assert (a.parameters, a.activations, a.activations_fixed) == (b.parameters, b.activations, b.activations_fixed)


def test_inference_on_meta_keeps_attention_weights_the_fused_cpu_kernel_does_not():
    # eval mode has no dropout: the CPU takes the fused attention kernel, the meta device the math path
    cpu, example, meta, on_meta, _ = _pair("encoder")
    a, b = estimate_inference_memory(cpu, example), estimate_inference_memory(meta, on_meta)
    B, H, T = 4, 4, 16
    assert b.activations - a.activations >= B * H * T * T * 4


def test_inference_estimate_counts_the_widest_intermediate():
    model = nn.Sequential(nn.Linear(32, 128), nn.ReLU(), nn.Linear(128, 10))
    e = estimate_inference_memory(model, (16, 32))
    # the input copy (16 x 32), the first result and ReLU's (16 x 128 each) are alive at once; float32
    assert e.activations == (16 * 32 + 2 * 16 * 128) * 4
    assert e.parameters == sum(p.numel() for p in model.parameters()) * 4
    assert e.at_batch(32).activations == 2 * e.activations
    assert estimate_inference_memory(model, (16, 32), "fp16").parameters == e.parameters // 2


def test_largest_batch_takes_an_inference_estimate():
    e = InferenceEstimate(parameters=GiB, activations=2**20, batch_size=1, precision="fp32")
    card = GPU("2 GiB", 2 * GiB, 0)
    b = largest_batch(e, device=card, reserve=0.0)
    assert b == GiB // 2**20 and e.at_batch(b).total <= 2 * GiB < e.at_batch(b + 1).total


def test_meta_amp_counts_a_float16_copy():
    _, _, meta, on_meta, _ = _pair("encoder")
    fp16 = estimate_training_memory(meta, on_meta, "adam", "fp16")
    amp = estimate_training_memory(meta, on_meta, "adam", "amp")
    n = sum(p.numel() for p in meta.parameters())
    assert amp.parameters == 4 * n and amp.optimizer_state == 8 * n  # float32 master weights and moments
    assert amp.activations == fp16.activations + 2 * n  # float16 activations plus the weights' float16 copies
    assert any("autocast" in note for note in amp.notes)


@pytest.mark.parametrize(
    ("name", "model"),
    [
        ("BERT-base", lambda: bert("base")),
        ("BERT-large", lambda: bert("large")),
        ("GPT-3 125M", lambda: gpt3("125M")),
        ("GPT-3 2.7B", lambda: gpt3("2.7B")),
        ("GPT-3 6.7B", lambda: gpt3("6.7B")),
        ("GPT-3 175B", lambda: gpt3("175B")),
    ],
)
def test_published_configurations_have_the_published_sizes(name, model):
    n = sum(p.numel() for p in model().parameters())
    assert abs(n / PUBLISHED_PARAMETERS[name] - 1) < 0.02, (name, n)


def test_gpt_output_layer_shares_the_embedding():
    model = gpt3("125M")
    tokens = torch.zeros(1, 4, dtype=torch.long, device="meta")
    assert model(tokens).shape == (1, 4, 50257)
    assert sum(p.numel() for p in model.parameters()) == 125_226_240  # one copy of the 50257 x 768 matrix


def test_transformer_layer_activations_match_korthikanti_et_al():
    # Korthikanti et al. (2022), eq. 1: a layer keeps s b h (34 + 5 a s / h) bytes in 16-bit training: 34 s b h for
    # its linear parts and 5 a s^2 b for attention (weights and dropout's output 2 bytes each, the mask 1 byte).
    # PyTorch's math attention keeps its dropout mask in 16 bits (6 a s^2 b), and a few more s b h copies.
    h, a, b = 192, 3, 1
    counts = {}
    for s in (64, 128):
        with torch.device("meta"):
            layer = GPT(vocab_size=10, d_model=h, layers=1, heads=a, max_len=s).decoder.layers[0].half()
        x = torch.empty(b, s, h, device="meta", dtype=torch.half, requires_grad=True)
        counts[s] = memlib.hardware._count_forward(layer, (x,), lambda y: y.sum(), "fp16").activations - 2
    per_sbh, per_as2b = np.linalg.solve([[s * b * h, a * s * s * b] for s in counts], list(counts.values()))
    assert 34 <= per_sbh <= 40 and 5 <= per_as2b <= 6, (per_sbh, per_as2b)


def test_evoformer_chunks_give_the_same_result_and_a_smaller_peak():
    torch.manual_seed(0)
    stack = Evoformer(blocks=1, c_m=8, c_z=8, heads_msa=2, heads_pair=2, c=4, c_opm=4, c_mul=8).double()
    m, z = torch.randn(1, 5, 16, 8, dtype=torch.double), torch.randn(1, 16, 16, 8, dtype=torch.double)
    whole = stack(m, z)
    stack.blocks[0].chunk = 3
    chunked = stack(m, z)
    for x, y in zip(whole, chunked, strict=True):
        torch.testing.assert_close(x, y)
    with torch.device("meta"):
        big = evoformer(blocks=1)
    shapes = ((1, 64, 96, 256), (1, 96, 96, 128))
    at_once = estimate_inference_memory(big, shapes).activations
    big.blocks[0].chunk = 8
    assert estimate_inference_memory(big, shapes).activations < 0.6 * at_once


@pytest.mark.parametrize("residues", [18, 20])  # 6 chunks of 3; 6 and a remainder of 2
def test_chunked_inference_on_meta_tracks_the_peak_of_every_chunk_computed(residues):
    # the meta device computes three chunks of each chunked layer and stands in for the others by empty parts; the
    # same tracker on the CPU, where every chunk is computed, sees the same peak
    def make():
        return Evoformer(blocks=2, c_m=16, c_z=8, heads_msa=2, heads_pair=2, c=4, c_opm=4, c_mul=8, chunk=3).eval()

    shapes = ((1, 7, residues, 16), (1, residues, residues, 8))
    peaks, outputs = [], []
    for device in ("cpu", "meta"):
        with torch.device(device):
            model, inputs = make(), [torch.zeros(s) for s in shapes]
        live = memlib.hardware._LiveBytes()
        with torch.no_grad(), live:
            outputs.append([t.shape for t in model(*(x.clone() for x in inputs))])
        peaks.append(live.peak)
    assert peaks[0] == peaks[1] and outputs[0] == outputs[1] == [torch.Size(s) for s in shapes], (peaks, outputs)


def test_evoformer_inference_peak_does_not_grow_past_two_blocks():
    # identical blocks run in turn, each freeing the results of the one before it: beyond the second block (whose
    # inputs are the first's outputs while the stack's own inputs are still held) the peak does not grow with depth
    shapes = ((1, 8, 24, 256), (1, 24, 24, 128))
    peaks = [estimate_inference_memory(evoformer(blocks=n, chunk=8), shapes).activations for n in (1, 2, 4)]
    m_and_z = (8 * 24 * 256 + 24 * 24 * 128) * 4
    assert peaks[0] + m_and_z == peaks[1] == peaks[2], peaks


def test_checkpointing_the_evoformer_keeps_one_block():
    stack = evoformer(blocks=4)
    shapes = ((1, 8, 24, 256), (1, 24, 24, 128))
    plain = estimate_training_memory(stack, shapes, "sgd", loss_fn=both_outputs_loss)
    kept = estimate_training_memory(stack, shapes, "sgd", checkpointing=True, loss_fn=both_outputs_loss)
    assert kept.activations < 0.4 * plain.activations


def _small_evoformer(blocks: int) -> Evoformer:
    with torch.device("meta"):
        return Evoformer(blocks=blocks, c_m=16, c_z=8, heads_msa=2, heads_pair=2, c=4, c_opm=4, c_mul=8, chunk=4)


EVO_SHAPES = ((1, 6, 10, 16), (1, 10, 10, 8))
DEEP = {  # name -> (builder at a depth, example input, estimate at that depth)
    "gpt": (lambda n: GPT(vocab_size=50, d_model=32, layers=n, heads=4, max_len=16), _tokens("meta"),
            lambda m, x: estimate_training_memory(m, x, "adam", "amp")),
    "bert": (lambda n: Bert(vocab_size=50, d_model=32, layers=n, heads=4, d_ff=64, max_len=16), _tokens("meta"),
             lambda m, x: estimate_training_memory(m, x, "adam")),
    "evoformer, checkpointed": (_small_evoformer, EVO_SHAPES, lambda m, x: estimate_training_memory(
        m, x, "adam", "amp", checkpointing=True, loss_fn=both_outputs_loss)),
    "evoformer": (_small_evoformer, EVO_SHAPES,
                  lambda m, x: estimate_training_memory(m, x, "sgd", loss_fn=both_outputs_loss)),
    "evoformer, inference": (_small_evoformer, EVO_SHAPES, lambda m, x: estimate_inference_memory(m, x)),
    "gpt, inference": (lambda n: GPT(vocab_size=50, d_model=32, layers=n, heads=4, max_len=16), _tokens("meta"),
                       lambda m, x: estimate_inference_memory(m, x, "fp16")),
}


@pytest.mark.parametrize("name", sorted(DEEP))
def test_two_depths_give_any_depth(name):
    build, example, estimate = DEEP[name]

    def at(n):
        with torch.device("meta"):
            return estimate(build(n), example)

    assert memlib.hardware.at_depth(at(2), at(3), (2, 3), 6) == at(6)


def test_at_depth_refuses_estimates_that_differ_otherwise():
    model = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8))
    a, b = estimate_training_memory(model, (4, 8), "adam"), estimate_training_memory(model, (4, 8), "sgd")
    with pytest.raises(ValueError, match="expected estimates that differ only in depth, got different optimizer"):
        memlib.hardware.at_depth(a, b, (2, 3), 6)
    with pytest.raises(ValueError, match=r"expected depths\[1\] > depths\[0\] = 3, got 2"):
        memlib.hardware.at_depth(a, a, (3, 2), 6)
