"""memlib.memory.memnet: MemN2N's tying, position and temporal encodings, linear start, traces, gradients, errors.

Shapes: ``B`` batch, ``S`` sentences, ``L`` words, ``V`` vocabulary, ``d`` embedding width, ``K`` hops.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call
from torch.testing import assert_close

import memlib
from memlib.memory.memnet import MemN2N, MemN2NConfig, position_encoding, position_weights
from memlib.tasks.babi import babi_samples, build_vocab, generate_babi, vectorize_babi

V, d, S, K = 12, 6, 5, 3



def make(dev=None, dtype=torch.float64, **kwargs) -> MemN2N:
    options = {"vocab_size": V, "embedding_dim": d, "memory_size": S, "hops": K} | kwargs
    return MemN2N(MemN2NConfig(**options)).to(dev or "cpu", dtype)


def story_batch(dev=None, B=3, n=(2, 5, 3), L=4, seed=0):
    """Stories (B, S, L) with n[b] sentences of 1..L words, padded; questions (B, L)."""
    g = torch.Generator().manual_seed(seed)
    stories = torch.zeros(B, S, L, dtype=torch.long)
    for b in range(B):
        for s in range(n[b]):
            words = int(torch.randint(1, L + 1, (1,), generator=g))
            stories[b, s, :words] = torch.randint(1, V, (words,), generator=g)
    questions = torch.zeros(B, L, dtype=torch.long)
    questions[:, :3] = torch.randint(1, V, (B, 3), generator=g)
    return stories.to(dev or "cpu"), questions.to(dev or "cpu")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("tying", ["adjacent", "layerwise"])
def test_shapes_device_and_dtype(dev, dtype, tying):
    model = make(dev, dtype, tying=tying)
    stories, questions = story_batch(dev)
    logits = model(stories, questions)
    assert logits.shape == (3, V) and logits.dtype == dtype and logits.device.type == dev.type
    assert torch.isfinite(logits).all()


def test_attention_is_a_distribution_over_the_story_per_hop(dev):
    model = make(dev)
    stories, questions = story_batch(dev)
    with memlib.trace() as tr:
        model(stories, questions)
    assert sorted(tr.names()) == ["memn2n.attention", "memn2n.output", "memn2n.query"]
    assert all(len(tr[name]) == K for name in tr.names())
    p = tr.stack("memn2n.attention")  # (K, B, S)
    assert p.shape == (K, 3, S)
    assert (p >= 0).all()
    assert_close(p.sum(-1), torch.ones(K, 3, dtype=p.dtype, device=dev))
    filled = (stories != 0).any(-1)
    assert (p[:, ~filled] == 0).all(), "empty slots get no attention"
    assert tr.last("memn2n.query").shape == tr.last("memn2n.output").shape == (3, d)


def test_hops_add_what_they_read():
    model = make()
    with memlib.trace() as tr:
        model(*story_batch())
    u, o = tr.stack("memn2n.query"), tr.stack("memn2n.output")
    assert_close(u[1:], u[:-1] + o[:-1])  # u^{k+1} = u^k + o^k


def test_adjacent_tying_shares_parameters():
    model = make()
    for k in range(1, K):
        assert model.A(k + 1) is model.C(k)
        assert model.T_A(k + 1) is model.T_C(k)
    assert model.B is model.A(1)
    assert model.W is model.C(K)
    names = dict(model.named_parameters())
    assert len(names) == 2 * (K + 1), "K + 1 embedding and K + 1 temporal matrices, nothing else"
    assert sum(p.numel() for p in model.parameters()) == (K + 1) * (V * d + S * d)
    # one tensor feeds two roles: its gradient collects both
    loss = model(*story_batch()).sum()
    loss.backward()
    assert model.C(1).grad is model.A(2).grad and model.C(1).grad.abs().sum() > 0


def test_layerwise_tying_shares_across_hops_and_adds_H():
    model = make(tying="layerwise")
    for k in range(1, K):
        assert model.A(k) is model.A(k + 1) and model.C(k) is model.C(k + 1)
    assert model.B is not model.A(1) and model.W is not model.C(K)
    assert model.H.weight.shape == (d, d)
    with memlib.trace() as tr:
        model(*story_batch())
    u, o = tr.stack("memn2n.query"), tr.stack("memn2n.output")
    assert_close(u[1:], u[:-1] @ model.H.weight.detach().T + o[:-1])  # u^{k+1} = H u^k + o^k


def test_position_encoding_matches_the_papers_formula():
    J, dim, max_len = 4, 5, 6
    weights = position_encoding(torch.tensor(J), max_len, dim, torch.float64)  # (max_len, d)
    assert weights.shape == (max_len, dim)
    for j in range(1, max_len + 1):
        for k in range(1, dim + 1):
            expected = (1 - j / J) - (k / dim) * (1 - 2 * j / J) if j <= J else 0.0
            assert weights[j - 1, k - 1].item() == pytest.approx(expected, abs=1e-12)
    batched = position_encoding(torch.tensor([[2, 4], [1, 0]]), max_len, dim, torch.float64)
    assert batched.shape == (2, 2, max_len, dim)
    assert_close(batched[0, 1], weights)
    assert (batched[1, 1] == 0).all()


def test_position_encoding_makes_word_order_matter():
    stories, questions = story_batch()
    stories[0, 0, :3] = torch.tensor([1, 2, 3])
    swapped = stories.clone()
    swapped[0, 0, :3] = torch.tensor([3, 2, 1])
    bag = make(position_encoding=False)
    assert_close(bag(stories, questions), bag(swapped, questions))
    pe = make()
    assert not torch.allclose(pe(stories, questions)[0], pe(swapped, questions)[0])


def test_temporal_encoding_makes_sentence_order_matter():
    stories, questions = story_batch()
    swapped = stories.clone()
    swapped[1, [0, 1]] = stories[1, [1, 0]]
    plain = make(temporal_encoding=False)
    assert_close(plain(stories, questions), plain(swapped, questions))
    te = make()
    assert not torch.allclose(te(stories, questions)[1], te(swapped, questions)[1])


def test_temporal_encoding_counts_back_from_the_question():
    model = make()
    stories, questions = story_batch(n=(2, 2, 2))
    shorter = MemN2N(MemN2NConfig(V, d, memory_size=S, hops=K)).double()
    shorter.load_state_dict(model.state_dict())
    # The same stories with the empty slots cut off: same distances, so the same answer.
    assert_close(shorter(stories[:, :2], questions), model(stories, questions))


@pytest.mark.parametrize("pe", [True, False])
def test_sentence_vectors_are_the_papers_sums(pe):
    """m_i = sum_j l_j * A x_ij (PE) or sum_j A x_ij: the bag-of-words matmul equals the word-by-word sum."""
    model = make(position_encoding=pe)
    stories, _ = story_batch()
    words = stories != 0  # (B, S, L)
    L = stories.shape[-1]
    weights = position_encoding(words.sum(-1), L, d, torch.float64) if pe else torch.ones(*stories.shape, d).double()
    for E in (model.A(1), model.C(2)):
        direct = (F.embedding(stories, E) * words[..., None] * weights).sum(-2)  # (B, S, d)
        assert_close(model._embed(stories, E), direct)
    stacked = model._embed(stories, torch.stack([model.A(1), model.C(2)]))  # (B, S, 2, d)
    assert_close(stacked[:, :, 1], model._embed(stories, model.C(2)))


def test_position_weights_factor_the_encoding():
    a, b = position_weights(torch.tensor([[3, 1]]), 4, torch.float64)  # (1, 2, 4) each
    k = torch.arange(1, d + 1, dtype=torch.float64)
    assert_close(a[..., None] + (k / d) * b[..., None], position_encoding(torch.tensor([[3, 1]]), 4, d, torch.float64))


def _filled(n=(2, 5, 3), slots=S):
    return torch.arange(slots) < torch.tensor(n)[:, None]  # (B, S): the first n[b] slots hold sentences


def test_random_noise_is_only_applied_in_training():
    model = make(random_noise=0.5)
    filled = _filled()
    plain = (filled.sum(-1, keepdim=True) - 1 - torch.arange(S)).clamp(min=0) * filled
    model.eval()
    assert_close(model.temporal_indices(filled), plain)
    model.train()
    draws = torch.stack([model.temporal_indices(filled) for _ in range(50)])  # (50, B, S)
    assert (draws != plain).any(), "training mode moves some sentences back"
    assert make(random_noise=0.0).train().temporal_indices(filled).equal(plain), "no noise: the plain indices"
    stories, questions = story_batch()
    model.eval()
    assert_close(model(stories, questions), model(stories, questions))  # evaluation is deterministic


def test_random_noise_inserts_empty_memories_among_the_sentences():
    model = make(random_noise=0.5, memory_size=10).train()  # room for 6 sentences and 3 empty memories
    n = torch.tensor([1, 3, 6])
    filled = _filled(n.tolist(), slots=8)
    for _ in range(50):
        t = model.temporal_indices(filled)  # (B, S)
        for b, count in enumerate(n.tolist()):
            sentences = t[b, :count]
            assert (sentences[:-1] > sentences[1:]).all(), f"sentences keep their order: {t[b]}"
            places = count + math.ceil(0.5 * count)  # at most ceil(rn * n) empty memories are added
            assert sentences.max() <= places - 1 and sentences.min() >= 0, t[b]
            assert (t[b, count:] == 0).all(), "empty slots keep index 0"


def test_random_noise_stays_inside_the_temporal_matrix():
    model = make(random_noise=1.0, memory_size=4).train()
    t = torch.stack([model.temporal_indices(_filled((4,), slots=4)) for _ in range(50)])
    assert t.max() == 3, "indices past the memory are clamped to its last row, as in the authors' code"


def test_linear_start_removes_the_softmax():
    model = make()
    stories, questions = story_batch()
    filled = (stories != 0).any(-1)
    with memlib.trace() as soft:
        model(stories, questions)
    model.linear_start = True
    with memlib.trace() as linear:
        model(stories, questions)
    p_linear, p_soft = linear["memn2n.attention"][0], soft["memn2n.attention"][0]  # hop 1: same u^1 in both
    assert not torch.allclose(p_linear.sum(-1), torch.ones(3, dtype=torch.float64))
    assert (p_linear < 0).any(), "raw scores u^T m_i, not a distribution"
    assert (p_linear[~filled] == 0).all()
    assert_close(torch.softmax(p_linear.masked_fill(~filled, float("-inf")), -1), p_soft)
    # p_i = u^T m_i: check one entry by hand
    u = linear["memn2n.query"][0]
    m = (
        model._embed(stories, model.A(1))
        + model.T_A(1)[(filled.sum(-1, keepdim=True) - 1 - torch.arange(S)).clamp(min=0)]
    )
    assert_close(p_linear[filled], torch.einsum("bsd,bd->bs", m, u).detach()[filled])


def test_linear_start_is_the_config_mode():
    assert make(linear_start=True).linear_start is True
    assert make().linear_start is False


def test_gradcheck():
    model = make(vocab_size=6, embedding_dim=3, hops=2, memory_size=3)
    stories = torch.tensor([[[1, 2, 0], [3, 4, 5], [0, 0, 0]], [[5, 0, 0], [2, 2, 1], [4, 3, 0]]])
    questions = torch.tensor([[1, 3, 0], [2, 0, 0]])
    names = [name for name, _ in model.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in model.parameters()]

    def forward(*values):
        return functional_call(model, dict(zip(names, values, strict=True)), (stories, questions))

    assert torch.autograd.gradcheck(forward, tuple(params), fast_mode=True)


def test_learns_task_1_beyond_chance():
    train = babi_samples(generate_babi(1, 100, seed=1))
    test = babi_samples(generate_babi(1, 40, seed=2))
    vocab = build_vocab(train + test)
    a, b = vectorize_babi(train, vocab, 10), vectorize_babi(test, vocab, 10)
    torch.manual_seed(0)
    model = MemN2N(MemN2NConfig(len(vocab), memory_size=10))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.03)
    g = torch.Generator().manual_seed(0)
    for _ in range(100):  # about a second on one CPU core
        idx = torch.randint(len(train), (32,), generator=g)
        loss = F.cross_entropy(model(a.stories[idx], a.questions[idx]), a.answers[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        accuracy = (model(b.stories, b.questions).argmax(-1) == b.answers).float().mean().item()
    chance = 1 / 6  # six places
    assert accuracy > 0.5 > chance, f"accuracy {accuracy:.2f} after 100 steps"


def _bad(**kwargs):
    return lambda: MemN2NConfig(**({"vocab_size": V} | kwargs))


def _call(stories=None, questions=None, **kwargs):
    s, q = story_batch()
    return lambda: make(**kwargs)(s if stories is None else stories, q if questions is None else questions)


BAD = [  # (call, exception, message with the expected and the actual value)
    (_bad(hops=0), ValueError, r"hops as a positive integer, got 0"),
    (_bad(embedding_dim=-4), ValueError, r"embedding_dim as a positive integer, got -4"),
    (_bad(memory_size=-1), ValueError, r"memory_size as a positive integer, got -1"),
    (_bad(vocab_size=1), ValueError, r"vocab_size >= 2 .*got 1"),
    (_bad(random_noise=1.5), ValueError, r"random_noise in \[0, 1\], got 1.5"),
    (_bad(tying="rnn"), ValueError, r"tying in \('adjacent', 'layerwise'\), got 'rnn'"),
    (lambda: MemN2N({"vocab_size": V}), TypeError, r"expected a MemN2NConfig, got dict"),
    (_call(stories=torch.ones(3, S + 1, 4, dtype=torch.long)), ValueError, r"at most memory_size=5 .*got S=6"),
    (_call(stories=torch.full((3, S, 4), V)), ValueError, r"stories word ids in \[0, 12\), got min 12, max 12"),
    (_call(questions=-torch.ones(3, 4, dtype=torch.long)), ValueError, r"questions word ids in \[0, 12\), got min -1"),
    (_call(stories=torch.ones(3, S, 4)), TypeError, r"stories as an integer tensor of word ids, got torch.float32"),
    (_call(stories=torch.ones(3, 4, dtype=torch.long)), ValueError, r"stories of shape \(B, S, L\).*got \(3, 4\)"),
    (_call(questions=torch.ones(2, 4, dtype=torch.long)), ValueError, r"questions for 3 stories, got 2 questions"),
    (_call(stories=torch.zeros(3, S, 4, dtype=torch.long)), ValueError, r"at least one sentence.*rows \[0, 1, 2\]"),
    (_call(questions=[[1, 2]]), TypeError, r"questions as a tensor \(B, L\) of word ids, got list"),
    (lambda: make().A(0), ValueError, r"hop k in \[1, 3\], got 0"),
]


@pytest.mark.parametrize(("call", "error", "message"), BAD)
def test_bad_inputs(call, error, message):
    with pytest.raises(error, match=message):
        call()
