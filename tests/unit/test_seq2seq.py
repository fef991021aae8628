"""memlib.hybrid.Seq2Seq: shapes, greedy decoding, attention traces per step, padding, a short training run, errors.

Shapes: ``B`` batch, ``S`` source length, ``T`` target steps, ``V`` target vocabulary.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn
from torch.testing import assert_close

import memlib
from memlib.hybrid import Seq2Seq

SRC_V, TGT_V, S, T = 7, 6, 6, 4
CELLS = ["gru", "lstm"]
ATTENTION = [None, "bahdanau", "luong", "local-m", "local-p"]
F64 = torch.float64



def make(cell: str, attention: str | None, dev: torch.device) -> Seq2Seq:
    return Seq2Seq(SRC_V, TGT_V, embed_dim=5, hidden_size=8, cell=cell, attention=attention, window=1).to(dev, F64)


def batch(dev):
    src = torch.randint(0, SRC_V, (3, S), device=dev)
    tgt = torch.randint(0, TGT_V, (3, T), device=dev)
    return src, tgt, torch.tensor([S, 3, 1], device=dev)


@pytest.mark.parametrize(("cell", "attention"), list(itertools.product(CELLS, ATTENTION)))
def test_greedy_decoding_is_teacher_forcing_on_its_own_output(dev, cell, attention):
    model = make(cell, attention, dev)
    src, tgt, lengths = batch(dev)
    logits = model(src, tgt, lengths)
    assert logits.shape == (3, T, TGT_V) and logits.device.type == dev.type
    generated = model.generate(src, T, lengths)
    assert generated.shape == (3, T)
    assert torch.equal(model(src, generated, lengths).argmax(-1), generated)
    # without teacher forcing, the decoder reads its own predictions: the same as greedy decoding
    assert torch.equal(model(src, tgt, lengths, teacher_forcing=0.0).argmax(-1), generated)


@pytest.mark.parametrize(("cell", "attention"), list(itertools.product(CELLS, ATTENTION)))
def test_padding_changes_nothing(dev, cell, attention):
    model = make(cell, attention, dev)
    src, tgt, lengths = batch(dev)
    logits = model(src, tgt, lengths)
    for b, n in enumerate(lengths.tolist()):
        alone = model(src[b : b + 1, :n], tgt[b : b + 1])  # no padding at all
        assert_close(logits[b : b + 1], alone, rtol=0, atol=1e-12)


@pytest.mark.parametrize("attention", ATTENTION[1:])
def test_attention_is_traced_per_step(dev, attention):
    model = make("gru", attention, dev)
    src, tgt, lengths = batch(dev)
    with memlib.trace() as tr:
        model(src, tgt, lengths)
    weights = tr.stack("seq2seq.attention", dim=1)  # (B, T, S)
    assert weights.shape == (3, T, S)
    padded = torch.arange(S, device=dev)[None, :] >= lengths[:, None]  # (B, S)
    assert (weights.masked_select(padded[:, None].expand_as(weights)) == 0).all()
    sums = weights.sum(-1)
    if attention == "local-p":  # Luong's Gaussian scales the weights down
        assert ((sums > 0) & (sums <= 1 + 1e-12)).all()
    else:
        assert_close(sums, torch.ones_like(sums))
    if attention == "local-m":  # p_t = min(t, S_b - 1), window 1
        p = torch.minimum(torch.arange(T, device=dev)[None, :], lengths[:, None] - 1)  # (B, T)
        outside = (torch.arange(S, device=dev) - p[..., None]).abs() > 1
        assert (weights[outside] == 0).all()


def test_learns_to_reverse():
    torch.manual_seed(0)
    model = Seq2Seq(6, 6, embed_dim=8, hidden_size=24, attention="luong")
    src = torch.randint(1, 6, (16, 4))
    tgt = src.flip(1)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.03)
    losses = []
    for _ in range(25):
        loss = nn.functional.cross_entropy(model(src, tgt).reshape(-1, 6), tgt.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses[::10]


def _model(**kwargs):
    return Seq2Seq(SRC_V, TGT_V, **kwargs)


SRC, TGT = torch.zeros(2, S, dtype=torch.long), torch.zeros(2, T, dtype=torch.long)

BAD_INPUTS = [
    (lambda: _model(cell="rnn"), ValueError, r"cell in \['gru', 'lstm'\], got 'rnn'"),
    (lambda: _model(attention="dot"), ValueError, r"attention in .*got 'dot'"),
    (lambda: _model(bos_index=TGT_V), ValueError, r"bos_index in \[0, 6\), got 6"),
    (lambda: _model()(SRC + SRC_V, TGT), ValueError, r"ids in \[0, 7\), got min 7, max 7"),
    (lambda: _model()(SRC, TGT.float()), TypeError, r"torch.long tensor \(B, T\), got torch.float32"),
    (lambda: _model()(SRC, TGT[:1]), ValueError, r"one batch size, got 2 and 1"),
    (lambda: _model()(SRC, TGT, teacher_forcing=1.5), ValueError, r"teacher_forcing in \[0, 1\], got 1.5"),
    (lambda: _model()(SRC, TGT, torch.tensor([S, 0])), ValueError, r"src_lengths in \[1, 6\], got \[6, 0\]"),
    (lambda: _model()(SRC, TGT, torch.tensor([S])), ValueError, r"src_lengths of shape \(2,\), got \(1,\)"),
    (lambda: _model()(SRC, TGT, torch.tensor([2.0, 3.0])), TypeError, r"integer tensor \(B,\), got torch.float32"),
    (lambda: _model().generate(SRC, 0), ValueError, r"max_len as a positive integer, got 0"),
]


@pytest.mark.parametrize(("call", "error", "message"), BAD_INPUTS)
def test_bad_inputs(call, error, message):
    with pytest.raises(error, match=message):
        call()
