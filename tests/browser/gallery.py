"""The book's seven live explorers on one page, built the way the chapters build them (small untrained models).

``seven_explorers.ipynb`` shows them in Voila; ``test_voila.py`` loads that page again and again and drives each
one. Every builder returns the explorer; the notebook calls ``show(live=True)`` on it. The models are small and
untrained: what is tested is that the page renders and answers, not what the models learned.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

import memlib
from memlib import interpret
from memlib.hybrid import SequenceClassifier, SequenceRegressor
from memlib.tasks import TEMPORAL_ORDER_SYMBOLS, copy_batch, encode_bits, temporal_order_batch
from memlib.transformer import TransformerEncoder, TransformerEncoderLayer
from widgets import (
    AddressingPipeline,
    AttentionExplorer,
    AttributionExplorer,
    GateExplorer,
    HiddenStateExplorer,
    MemoryBudgetExplorer,
    MemoryExplorer,
    book_models,
)

SYMBOLS = list(TEMPORAL_ORDER_SYMBOLS)
WORDS = "the a film plot story was is not very good bad great dull fine".split()


def hidden_state() -> HiddenStateExplorer:
    """Chapter 1: a GRU's hidden state on typed bits."""
    model = SequenceRegressor("gru", hidden_size=8)

    def compute(text):
        x = encode_bits(text)[None]  # (1, T)
        if x.shape[1] > 200:
            raise ValueError(f"expected at most 200 bits, got {x.shape[1]}")
        with torch.no_grad(), memlib.trace() as tr:
            model(x)
        return HiddenStateExplorer.prepare(hidden=tr.last("hidden")[0], inputs=x[0],
                                           readout=tr.last("readout")[0], target=x[0].cumsum(0))

    return HiddenStateExplorer(compute("1101001110010111"), compute=compute, initial_input="1101001110010111")


def gates() -> GateExplorer:
    """Chapter 2 (GRU): gates of an LSTM or GRU on the temporal-order task, with a shifted forget/update bias."""
    models = {cell: SequenceClassifier(cell, input_size=8, hidden_size=16, num_classes=4) for cell in ("lstm", "gru")}

    def inputs(kind, text):
        if kind == "temporal order":
            p = GateExplorer.parse_settings(text, {"length": 20, "seed": 3})
            if not 10 <= p["length"] <= 200:
                raise ValueError(f"expected a length from 10 to 200, got {p['length']:g}")
            return temporal_order_batch(1, int(p["length"]), seed=int(p["seed"])).inputs
        tokens = text.split()
        unknown = sorted(set(tokens) - set(SYMBOLS))
        if unknown or not 2 <= len(tokens) <= 200:
            raise ValueError(f"expected 2 to 200 symbols from {' '.join(SYMBOLS)} separated by spaces, "
                             f"got {unknown or len(tokens)}")
        ids = torch.tensor([SYMBOLS.index(t) for t in tokens])
        return nn.functional.one_hot(ids, len(SYMBOLS)).float()[None]

    def compute(settings):
        x = inputs(settings["input_kind"], settings["input_text"])
        model = models[settings["kind"]]
        shifted = SequenceClassifier(settings["kind"], input_size=8, hidden_size=16, num_classes=4)
        shifted.load_state_dict(model.state_dict())
        with torch.no_grad():
            shifted.rnn.bias_ih_l0[16:32] += settings["forget_bias"]
            with memlib.trace() as tr:
                shifted(x)
        labels = [SYMBOLS[i] for i in x[0].argmax(1).tolist()]
        variant = GateExplorer.from_trace(tr, settings["kind"], x[0], labels=labels, channels=SYMBOLS)
        return GateExplorer.prepare({f"{settings['kind'].upper()}, bias {settings['forget_bias']:+g}": variant})

    texts = {"temporal order": "length=20 seed=3", "symbols": "E a b X c d a b Y c d B"}
    first = {"input_kind": "temporal order", "input_text": texts["temporal order"], "forget_bias": 0.0, "kind": "gru"}
    return GateExplorer(compute(first), compute=compute, inputs=texts, kind="gru")


def attention() -> AttentionExplorer:
    """Chapter 12 (efficient Transformers): a Transformer encoder's attention on typed symbols, with a temperature."""
    torch.manual_seed(0)
    embed = nn.Linear(len(SYMBOLS), 32)
    encoder = TransformerEncoder(TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True), num_layers=1)

    def compute(settings):
        tokens = settings["text"].split()
        unknown = sorted(set(tokens) - set(SYMBOLS))
        if unknown or not 2 <= len(tokens) <= 48:
            got = f"unknown {' '.join(unknown)}" if unknown else f"{len(tokens)} symbols"
            raise ValueError(f"expected 2 to 48 symbols from {' '.join(SYMBOLS)} separated by spaces, got {got}")
        ids = torch.tensor([SYMBOLS.index(t) for t in tokens])
        x = embed(nn.functional.one_hot(ids, len(SYMBOLS)).float()[None]) / float(settings["temperature"])
        with torch.no_grad(), memlib.trace() as tr:
            encoder(x)
        return AttentionExplorer.from_trace(tr, tokens)

    text = " ".join(SYMBOLS[i] for i in temporal_order_batch(1, 24, seed=3).inputs[0].argmax(1).tolist())
    return AttentionExplorer(compute({"text": text, "temperature": 1.0}), compute=compute, text=text)


def memory() -> MemoryExplorer:
    """Chapter 3 (external memory): an NTM's reads and writes on the copy task."""
    torch.manual_seed(0)
    bits = 4
    net = memlib.NTM(bits + 2, bits, controller_size=16, memory_slots=16, memory_width=8)

    def compute(settings):
        vectors = MemoryExplorer.parse_bit_vectors(settings["sequence"], bits=bits)  # (L, K)
        if not 1 <= len(vectors) <= 32:
            raise ValueError(f"expected 1 to 32 vectors of {bits} bits, got {len(vectors)}")
        L = len(vectors)
        x = torch.zeros(1, 2 * L + 2, bits + 2)  # the copy task's layout (memlib.tasks.copy_batch)
        x[0, 0, bits], x[0, L + 1, bits + 1] = 1.0, 1.0
        x[0, 1:L + 1, :bits] = torch.as_tensor(vectors, dtype=torch.float32)
        with torch.no_grad(), memlib.trace() as tr:
            y, _ = net(x)
        return MemoryExplorer.from_trace(tr, "ntm", x[0], targets=vectors, outputs=torch.sigmoid(y[0]))

    def as_text(v):
        return " ".join("".join(str(int(b)) for b in row) for row in v)

    examples = {"4 vectors": as_text(copy_batch(1, 4, bits, seed=1).targets[0]),
                "8 vectors": as_text(copy_batch(1, 8, bits, seed=2).targets[0])}
    first = examples["4 vectors"]
    return MemoryExplorer(compute({"sequence": first, "example": None}), compute, examples=examples)


def addressing() -> AddressingPipeline:
    """Chapter 3: the NTM's addressing pipeline (its sliders run in the page's JavaScript)."""
    return AddressingPipeline()


def budget() -> MemoryBudgetExplorer:
    """Chapter 6: training memory of the book's Transformer encoder, estimated by memlib at any setting."""
    torch.set_num_threads(1)
    models = {name: m for name, m in book_models(quick=True).items() if name == "Transformer encoder"}
    return MemoryBudgetExplorer(MemoryBudgetExplorer.prepare(models), batch=16, models=models)


def attribution() -> AttributionExplorer:
    """Chapter 12 (interpretability): integrated gradients and saliency for a word-level LSTM classifier."""
    torch.manual_seed(0)

    class Classifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(len(WORDS) + 1, 16)  # id 0: padding, the baseline
            self.rnn = nn.LSTM(16, 16, batch_first=True)
            self.head = nn.Linear(16, 2)

        def forward(self, ids):  # (B, T) -> (B, 2)
            hidden, _ = self.rnn(self.embedding(ids))
            return self.head(hidden[:, -1])

    model = Classifier().eval()
    methods = ("integrated_gradients", "layer_integrated_gradients")
    targets = ["negative", "positive"]

    def recompute(tokens):
        unknown = sorted(set(tokens) - set(WORDS))
        if unknown or not 1 <= len(tokens) <= 40:
            raise ValueError(f"expected 1 to 40 words from {' '.join(WORDS)}, got {unknown or len(tokens)}")
        ids = torch.tensor([[WORDS.index(t) + 1 for t in tokens]])
        per_target = {m: np.stack([interpret.attribute(model, ids, m, target=c, n_steps=16).per_step[0].numpy()
                                   for c in range(2)]) for m in methods}
        with torch.no_grad():
            return per_target, targets[int(model(ids).argmax(1))]

    text = "the film was not very good"
    first, predicted = recompute(text.split())
    data = AttributionExplorer.prepare({m: a[None] for m, a in first.items()}, [text.split()], targets,
                                       predictions=[predicted])
    return AttributionExplorer(data, recompute, target="positive")


BUILDERS = {"hidden state": hidden_state, "gates": gates, "attention": attention, "memory": memory,
            "addressing": addressing, "budget": budget, "attribution": attribution}
