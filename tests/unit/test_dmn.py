"""memlib.memory.dmn: DMN and DMN+ modules, gates, padding, traces, gradients, errors.

Shapes: ``B`` batch, ``S`` sentences, ``L`` words, ``V`` vocabulary, ``H`` hidden width, ``P`` passes.
"""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call
from torch.testing import assert_close

import memlib
from memlib.memory.dmn import DMN, AttentionGRUCell, DMNConfig

V, E, H, P, S = 10, 5, 4, 2, 4
VARIANTS = ["dmn", "dmn+"]



def make(variant: str, dev=None, dtype=torch.float64) -> DMN:
    return DMN(DMNConfig(V, embedding_dim=E, hidden_size=H, passes=P, variant=variant)).to(dev or "cpu", dtype)


def story_batch(dev=None, n=(2, 4, 3), L=3, seed=0):
    """Stories (B, S, L) with n[b] sentences of 1..L words (padding after), questions (B, L)."""
    g = torch.Generator().manual_seed(seed)
    stories = torch.zeros(len(n), S, L, dtype=torch.long)
    for b, count in enumerate(n):
        for s in range(count):
            words = int(torch.randint(1, L + 1, (1,), generator=g))
            stories[b, s, :words] = torch.randint(1, V, (words,), generator=g)
    questions = torch.zeros(len(n), L, dtype=torch.long)
    questions[:, :2] = torch.randint(1, V, (len(n), 2), generator=g)
    return stories.to(dev or "cpu"), questions.to(dev or "cpu")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("variant", VARIANTS)
def test_shapes_device_and_dtype(dev, variant, dtype):
    model = make(variant, dev, dtype)
    logits = model(*story_batch(dev))
    assert logits.shape == (3, V) and logits.dtype == dtype and logits.device.type == dev.type
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("variant", VARIANTS)
def test_trace_names_shapes_and_gates(dev, variant):
    model = make(variant, dev)
    stories, questions = story_batch(dev)
    with memlib.trace() as tr:
        model(stories, questions)
    dmn_names = sorted(n for n in tr.names() if n.startswith("dmn."))
    assert dmn_names == ["dmn.episode", "dmn.facts", "dmn.gates", "dmn.memory", "dmn.question"]
    assert len(tr["dmn.facts"]) == len(tr["dmn.question"]) == 1
    assert all(len(tr[n]) == P for n in ("dmn.gates", "dmn.episode", "dmn.memory"))
    assert tr.last("dmn.facts").shape == (3, S, H)
    assert tr.last("dmn.question").shape == tr.last("dmn.episode").shape == tr.last("dmn.memory").shape == (3, H)
    g = tr.stack("dmn.gates")  # (P, B, S)
    assert g.shape == (P, 3, S)
    assert ((g >= 0) & (g <= 1)).all()
    filled = (stories != 0).any(-1)
    assert (g[:, ~filled] == 0).all(), "empty slots are never attended"
    if variant == "dmn+":
        assert_close(g.sum(-1), torch.ones(P, 3, dtype=g.dtype, device=dev))
    assert any(n.startswith("gru.") for n in tr.names()), "the GRUs inside record too"


def test_dmn_facts_are_the_input_gru_at_sentence_ends():
    model = make("dmn")
    stories, questions = story_batch()
    with memlib.trace() as tr:
        model(stories, questions)
    facts = tr.last("dmn.facts")
    for b in range(stories.shape[0]):
        sentences = [s[s != 0] for s in stories[b] if (s != 0).any()]
        words = torch.cat(sentences)  # the story's words in a row
        states, _ = model.input_gru(model.embedding(words)[None])  # (1, T, H)
        ends = torch.tensor([len(s) for s in sentences]).cumsum(0) - 1
        assert_close(facts[b, : len(sentences)], states[0, ends].detach())
        assert (facts[b, len(sentences) :] == 0).all()


def test_dmn_plus_facts_are_fused_position_encoded_sentences():
    model = make("dmn+")
    stories, questions = story_batch()
    with memlib.trace() as tr:
        model(stories, questions)
    facts = tr.last("dmn.facts")
    b, n = 1, 4  # the story with four sentences
    J = (stories[b] != 0).sum(-1)
    sentences = []
    for s in range(n):
        weights = torch.tensor(
            [[(1 - j / J[s]) - (k / E) * (1 - 2 * j / J[s]) for k in range(1, E + 1)] for j in range(1, J[s] + 1)],
            dtype=torch.float64,
        )
        sentences.append((weights * model.embedding(stories[b, s, : J[s]])).sum(0))
    states, _ = model.fusion_gru(torch.stack(sentences)[None])  # (1, n, 2H)
    assert_close(facts[b, :n], (states[0, :, :H] + states[0, :, H:]).detach())


@pytest.mark.parametrize("variant", VARIANTS)
def test_empty_slots_change_nothing(variant):
    model = make(variant)
    stories, questions = story_batch(n=(2, 3, 1))
    assert_close(model(stories[:, :3], questions), model(stories, questions))


def test_memory_starts_at_the_question_and_answers_come_from_the_last_memory():
    model = make("dmn")
    stories, questions = story_batch()
    with memlib.trace() as tr:
        model(stories, questions)
    e, m, q = tr["dmn.episode"], tr["dmn.memory"], tr.last("dmn.question")
    with torch.no_grad():
        assert_close(m[0], model.memory_gru(e[0], q))  # m^1 = GRU(e^1, m^0), m^0 = q
        assert_close(m[1], model.memory_gru(e[1], m[0]))


def test_attention_gru_follows_its_gate():
    cell = AttentionGRUCell(3, 4).double()
    x, h = torch.randn(2, 3, dtype=torch.float64), torch.randn(2, 4, dtype=torch.float64)
    assert_close(cell(x, h, torch.zeros(2, dtype=torch.float64)), h)
    # g = 1: h' is the candidate tanh(W x + b + r * (U h + b_U)), r = sigma(W_r x + b + U_r h + b)
    x_r, x_n = (x @ cell.weight_ih.T + cell.bias_ih).chunk(2, -1)
    h_r, h_n = (h @ cell.weight_hh.T + cell.bias_hh).chunk(2, -1)
    candidate = torch.tanh(x_n + torch.sigmoid(x_r + h_r) * h_n)
    assert_close(cell(x, h, torch.ones(2, dtype=torch.float64)), candidate)
    half = cell(x, h, torch.full((2,), 0.5, dtype=torch.float64))
    assert_close(half, 0.5 * candidate + 0.5 * h)


def test_attention_gru_projects_a_whole_sequence_once():
    cell = AttentionGRUCell(3, 4).double()
    x = torch.randn(2, 5, 3, dtype=torch.float64)  # (B, S, I)
    g = torch.rand(2, 5, dtype=torch.float64)
    h_step = h_call = torch.zeros(2, 4, dtype=torch.float64)
    projected = cell.project(x)  # (B, S, 2H)
    assert projected.shape == (2, 5, 8)
    for t in range(5):
        h_step = cell.step(projected[:, t], h_step, g[:, t])
        h_call = cell(x[:, t], h_call, g[:, t])
        assert_close(h_step, h_call)


def test_dmn_plus_episode_is_the_attention_gru_over_the_facts():
    model = make("dmn+")
    c = torch.randn(3, S, H, dtype=torch.float64)
    g = torch.softmax(torch.randn(3, S, dtype=torch.float64), -1)
    h = torch.zeros(3, H, dtype=torch.float64)
    for t in range(S):
        h = model.attention_gru(c[:, t], h, g[:, t])
    assert_close(model._episode(c, g), h)


@pytest.mark.parametrize("variant", VARIANTS)
def test_gradcheck(variant):
    model = make(variant)
    stories, questions = story_batch(n=(2, 3), L=2)
    weight = model.embedding.weight.detach().clone().requires_grad_()

    def forward(w):
        return functional_call(model, {"embedding.weight": w}, (stories, questions))

    assert torch.autograd.gradcheck(forward, (weight,), fast_mode=True)


def test_attention_gru_gradcheck():
    cell = AttentionGRUCell(3, 4).double()
    inputs = (torch.randn(2, 3), torch.randn(2, 4), torch.rand(2))
    inputs = tuple(t.double().requires_grad_() for t in inputs)
    assert torch.autograd.gradcheck(cell, inputs)


def _config(**kwargs):
    return lambda: DMNConfig(**({"vocab_size": V} | kwargs))


def _call(stories=None, questions=None):
    s, q = story_batch()
    return lambda: make("dmn")(s if stories is None else stories, q if questions is None else questions)


BAD = [  # (call, exception, message with the expected and the actual value)
    (_config(passes=0), ValueError, r"passes as a positive integer, got 0"),
    (_config(hidden_size=-8), ValueError, r"hidden_size as a positive integer, got -8"),
    (_config(variant="dmn++"), ValueError, r"variant in \('dmn', 'dmn\+'\), got 'dmn\+\+'"),
    (_config(vocab_size=1), ValueError, r"vocab_size >= 2 .*got 1"),
    (lambda: DMN(None), TypeError, r"expected a DMNConfig, got NoneType"),
    (_call(stories=torch.full((3, S, 3), V)), ValueError, r"stories word ids in \[0, 10\), got min 10, max 10"),
    (_call(stories=torch.ones(3, S, 3)), TypeError, r"stories as an integer tensor of word ids, got torch.float32"),
    (
        _call(questions=torch.zeros(3, 3, dtype=torch.long)),
        ValueError,
        r"at least one word in every one of the questions",
    ),
    (_call(stories=torch.zeros(3, S, 3, dtype=torch.long)), ValueError, r"every one of the stories.*rows \[0, 1, 2\]"),
    (_call(questions=torch.ones(1, 3, dtype=torch.long)), ValueError, r"questions for 3 stories, got 1 questions"),
    (_call(questions=torch.ones(3, dtype=torch.long)), ValueError, r"questions of shape \(B, L\).*got \(3,\)"),
]


@pytest.mark.parametrize(("call", "error", "message"), BAD)
def test_bad_inputs(call, error, message):
    with pytest.raises(error, match=message):
        call()
