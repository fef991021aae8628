"""End-to-end memory network (MemN2N): Sukhbaatar, Szlam, Weston & Fergus 2015, "End-To-End Memory Networks".

Every sentence of a story becomes a memory (an input vector ``m_i`` and an output vector ``c_i``); the
question becomes a state ``u``; each of ``K`` hops attends over the memories with ``u`` and adds what it
read to ``u``; the last state predicts the answer word.

Shapes: ``B`` batch, ``S`` sentences (memory slots), ``L`` words per sentence (or question), ``V`` vocabulary,
``d`` embedding width, ``K`` hops.

Inputs are word ids (``memlib.tasks.babi.vectorize_babi`` makes them): stories (B, S, L) in story order,
questions (B, L'), id 0 padding. A slot whose words are all 0 is empty: it gets no attention. Embedding
matrices are stored as (V, d), the transpose of the paper's d x V.

Trace names (per hop ``k = 1..K``, in order):

- ``memn2n.attention`` (B, S): ``p^k``, the weights over memories (sum to 1 over the non-empty slots;
  with ``linear_start`` the raw scores ``u^T m_i``, 0 on empty slots);
- ``memn2n.query`` (B, d): ``u^k``, the state that attends at hop k;
- ``memn2n.output`` (B, d): ``o^k``, what hop k reads.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from memlib.tracing import record
from memlib.validate import check_int

TYINGS = ("adjacent", "layerwise")


@dataclass(frozen=True)
class MemN2NConfig:
    """The sizes and choices of a :class:`MemN2N`, checked when made.

    >>> MemN2NConfig(vocab_size=1)
    Traceback (most recent call last):
    ...
    ValueError: MemN2NConfig: expected vocab_size >= 2 (padding and a word), got 1
    """
    vocab_size: int  # V, with id 0 for padding
    embedding_dim: int = 20  # d = 20: the paper's bAbI setting (sec. 4.2)
    memory_size: int = 50  # the paper's bAbI memory: the 50 most recent sentences (sec. 4.2)
    hops: int = 3  # K = 3: the paper's bAbI setting
    tying: str = "adjacent"  # sec. 2.2: "adjacent" (A^{k+1} = C^k) or "layerwise" (RNN-like, with H)
    position_encoding: bool = True  # PE (sec. 4.1): word order matters; False is a bag of words
    temporal_encoding: bool = True  # TE (sec. 4.1): a learned vector per distance from the question
    linear_start: bool = False  # LS (sec. 4.2): the initial mode; see MemN2N

    def __post_init__(self) -> None:
        for name in ("vocab_size", "embedding_dim", "memory_size", "hops"):
            value = getattr(self, name)
            check_int("MemN2NConfig", name, value, low=1)
        if self.vocab_size < 2:
            raise ValueError(f"MemN2NConfig: expected vocab_size >= 2 (padding and a word), got {self.vocab_size}")
        if self.tying not in TYINGS:
            raise ValueError(f"MemN2NConfig: expected tying in {TYINGS}, got {self.tying!r}")


def position_encoding(lengths: torch.Tensor, max_len: int, d: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The weights ``l_kj`` of sec. 4.1 for sentences of ``lengths`` words: (..., max_len, d).

    ``l_kj = (1 - j/J) - (k/d)(1 - 2j/J)`` for word ``j = 1..J`` of a sentence of ``J`` words and embedding
    component ``k = 1..d``; zero past each sentence's last word. On the device of ``lengths``.

    >>> position_encoding(torch.tensor([3]), max_len=4, d=2).shape  # (B, J, d); padding positions are 0
    torch.Size([1, 4, 2])
    """
    j = torch.arange(1, max_len + 1, device=lengths.device, dtype=dtype)[:, None]  # (max_len, 1)
    k = torch.arange(1, d + 1, device=lengths.device, dtype=dtype)  # (d,)
    J = lengths.to(dtype)[..., None, None]  # (..., 1, 1)
    words = j <= J  # (..., max_len, 1)
    J = J.clamp(min=1)  # an empty sentence has no words to weigh: avoid 0/0
    # l_kj = (1 - j/J) - (k/d)(1 - 2j/J)
    weights = (1 - j / J) - (k / d) * (1 - 2 * j / J)  # (..., max_len, d)
    return weights * words


class MemN2N(nn.Module):
    """MemN2N with ``K`` hops (sec. 2.2), PE and TE (sec. 4.1) and linear start (sec. 4.2).

    Weight tying (sec. 2.2):

    - ``"adjacent"``: ``K + 1`` embedding matrices ``E_0 .. E_K`` with ``A^k = E_{k-1}``, ``C^k = E_k``,
      ``B = A^1 = E_0`` and ``W^T = C^K = E_K``; the temporal matrices are tied the same way
      (``T_A^{k+1} = T_C^k``). Hop update ``u^{k+1} = u^k + o^k``.
    - ``"layerwise"``: one ``A`` and one ``C`` (and ``T_A``, ``T_C``) for every hop, separate ``B`` and ``W``,
      and a linear map ``H``: ``u^{k+1} = H u^k + o^k``.

    ``A(k)``, ``C(k)`` (``k = 1..K``), ``B``, ``W``, ``T_A(k)`` and ``T_C(k)`` return the tied tensors.

    Linear start: while ``model.linear_start`` is True the memory layers have no softmax (``p^k = u^T m_i``),
    so the model is linear up to the answer's softmax; the paper re-inserts the softmax
    (``model.linear_start = False``) when the validation loss stops falling. It is a mode, like ``training``.

    Differences from the paper: empty slots are masked out (the paper's fixed memory held zero vectors);
    no random noise (RN, sec. 4.1: empty memories added in training); initial weights N(0, 0.1) as in sec. 4.2.

    ``forward(stories (B, S, L), questions (B, L')) -> logits (B, V)`` (the answer softmax is left to the loss).

    >>> model = MemN2N(MemN2NConfig(vocab_size=10, embedding_dim=8, memory_size=4, hops=2))
    >>> stories = torch.randint(1, 10, (2, 3, 5))  # (B, S sentences, W words)
    >>> questions = torch.randint(1, 10, (2, 5))
    >>> model(stories, questions).shape  # answer logits (B, V)
    torch.Size([2, 10])
    """

    def __init__(self, config: MemN2NConfig):
        super().__init__()
        if not isinstance(config, MemN2NConfig):
            raise TypeError(f"MemN2N: expected a MemN2NConfig, got {type(config).__name__}")
        self.config = config
        self.linear_start = config.linear_start
        V, d, K = config.vocab_size, config.embedding_dim, config.hops
        self._adjacent = adjacent = config.tying == "adjacent"
        # adjacent: E_0 .. E_K; layerwise: A, C, B, W
        self.embeddings = nn.ParameterList([nn.Parameter(torch.empty(V, d)) for _ in range(K + 1 if adjacent else 4)])
        if config.temporal_encoding:  # adjacent: T_0 .. T_K (T_A^k = T_{k-1}, T_C^k = T_k); layerwise: T_A, T_C
            S = config.memory_size
            self.temporal = nn.ParameterList([nn.Parameter(torch.empty(S, d)) for _ in range(K + 1 if adjacent else 2)])
        self.H = None if adjacent else nn.Linear(d, d, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for weight in self.parameters():
            nn.init.normal_(weight, 0.0, 0.1)  # sec. 4.2: "Gaussian with zero mean and sigma = 0.1"

    # The paper's matrices, tied as the config says (k counts hops from 1, as in the paper).

    def _hop(self, k: int) -> int:
        return check_int("MemN2N", "k", k, low=1, high=self.config.hops, expected=f"a hop k in [1, {self.config.hops}]")

    def A(self, k: int) -> nn.Parameter:
        return self.embeddings[self._hop(k) - 1 if self._adjacent else 0]

    def C(self, k: int) -> nn.Parameter:
        return self.embeddings[self._hop(k) if self._adjacent else 1]

    @property
    def B(self) -> nn.Parameter:
        return self.embeddings[0 if self._adjacent else 2]

    @property
    def W(self) -> nn.Parameter:
        return self.embeddings[self.config.hops if self._adjacent else 3]

    def T_A(self, k: int) -> nn.Parameter | None:
        if not self.config.temporal_encoding:
            return None
        return self.temporal[self._hop(k) - 1 if self._adjacent else 0]

    def T_C(self, k: int) -> nn.Parameter | None:
        if not self.config.temporal_encoding:
            return None
        return self.temporal[self._hop(k) if self._adjacent else 1]

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"V={c.vocab_size}, d={c.embedding_dim}, memory_size={c.memory_size}, K={c.hops}, tying={c.tying!r}, "
            f"PE={c.position_encoding}, TE={c.temporal_encoding}, linear_start={self.linear_start}"
        )

    def _check(self, stories: object, questions: object) -> None:
        V, S_max = self.config.vocab_size, self.config.memory_size
        for label, x, dims, shape in (("stories", stories, 3, "(B, S, L)"), ("questions", questions, 2, "(B, L)")):
            if not isinstance(x, torch.Tensor):
                raise TypeError(f"MemN2N: expected {label} as a tensor {shape} of word ids, got {type(x).__name__}")
            if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
                raise TypeError(f"MemN2N: expected {label} as an integer tensor of word ids, got {x.dtype}")
            if x.dim() != dims or 0 in x.shape:
                raise ValueError(f"MemN2N: expected {label} of shape {shape}, non-empty, got {tuple(x.shape)}")
            low, high = int(x.min()), int(x.max())
            if low < 0 or high >= V:
                raise ValueError(f"MemN2N: expected {label} word ids in [0, {V}), got min {low}, max {high}")
        if stories.shape[0] != questions.shape[0]:
            raise ValueError(
                f"MemN2N: expected questions for {stories.shape[0]} stories, got {questions.shape[0]} questions"
            )
        if stories.shape[1] > S_max:
            raise ValueError(
                f"MemN2N: expected at most memory_size={S_max} sentences per story, got S={stories.shape[1]}"
            )
        empty = ~(stories != 0).any(-1).any(-1)  # (B,)
        if empty.any():
            at = empty.nonzero().flatten().tolist()
            raise ValueError(f"MemN2N: expected at least one sentence per story, got empty stories at batch rows {at}")

    def _embed(self, ids: torch.Tensor, E: torch.Tensor) -> torch.Tensor:
        """Sentence vectors: sum_j l_j * E x_ij (PE) or sum_j E x_ij (bag of words): (..., L) ids -> (..., d)."""
        words = ids != 0  # (..., L)
        x = F.embedding(ids, E) * words[..., None]  # (..., L, d); padding adds nothing whatever E[0] holds
        if self.config.position_encoding:
            x = x * position_encoding(words.sum(-1), ids.shape[-1], E.shape[1], E.dtype)
        return x.sum(-2)

    def forward(self, stories: torch.Tensor, questions: torch.Tensor) -> torch.Tensor:
        self._check(stories, questions)
        S = stories.shape[1]
        filled = (stories != 0).any(-1)  # (B, S): slots holding a sentence
        n = filled.sum(-1, keepdim=True)  # (B, 1) sentences per story
        # Sec. 4.1: sentences are indexed in reverse order, by their distance from the question.
        distance = (n - 1 - torch.arange(S, device=stories.device)).clamp(min=0)  # (B, S)

        # u^1 = B q  (with PE: sum_j l_j * B q_j)
        u = self._embed(questions, self.B)  # (B, d)
        for k in range(1, self.config.hops + 1):
            # m_i = sum_j l_j * A^k x_ij + T_A^k(i);  c_i = sum_j l_j * C^k x_ij + T_C^k(i)
            m = self._embed(stories, self.A(k))  # (B, S, d)
            c = self._embed(stories, self.C(k))  # (B, S, d)
            if self.config.temporal_encoding:
                m = m + self.T_A(k)[distance]
                c = c + self.T_C(k)[distance]
            scores = torch.einsum("bsd,bd->bs", m, u)  # (B, S): u^T m_i
            if self.linear_start:
                # Sec. 4.2: linear start removes the softmax: p_i = u^T m_i
                p = scores.masked_fill(~filled, 0.0)
            else:
                # p_i = softmax(u^T m_i)
                p = torch.softmax(scores.masked_fill(~filled, float("-inf")), dim=-1)
            # o = sum_i p_i c_i
            o = torch.einsum("bs,bsd->bd", p, c)  # (B, d)
            record("memn2n.attention", p)
            record("memn2n.query", u)
            record("memn2n.output", o)
            # u^{k+1} = u^k + o^k  (layer-wise tying: u^{k+1} = H u^k + o^k)
            u = (u if self._adjacent else self.H(u)) + o
        # a = softmax(W (o^K + u^K)) = softmax(W u^{K+1}); the softmax is left to the loss
        return F.linear(u, self.W)  # (B, V)
