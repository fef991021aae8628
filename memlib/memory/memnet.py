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

import math
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
    random_noise: float = 0.0  # RN (sec. 4.1): in training, insert up to this share of empty memories (paper: 0.1)

    def __post_init__(self) -> None:
        for name in ("vocab_size", "embedding_dim", "memory_size", "hops"):
            value = getattr(self, name)
            check_int("MemN2NConfig", name, value, low=1)
        if self.vocab_size < 2:
            raise ValueError(f"MemN2NConfig: expected vocab_size >= 2 (padding and a word), got {self.vocab_size}")
        if not (isinstance(self.random_noise, int | float) and 0 <= self.random_noise <= 1):
            raise ValueError(f"MemN2NConfig: expected random_noise in [0, 1], got {self.random_noise!r}")
        if self.tying not in TYINGS:
            raise ValueError(f"MemN2NConfig: expected tying in {TYINGS}, got {self.tying!r}")


def position_weights(
    lengths: torch.Tensor, max_len: int, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two word-position factors of PE (sec. 4.1): ``l_kj = a_j + (k/d) b_j``, each (..., max_len).

    ``a_j = 1 - j/J`` and ``b_j = 2j/J - 1`` for word ``j = 1..J`` of a sentence of ``J`` words; zero past
    each sentence's last word. They do not depend on the embedding component ``k``, so a sentence vector
    ``sum_j l_j * E x_j`` is ``sum_j a_j E x_j + (k/d) sum_j b_j E x_j``: two weighted bags of words.

    >>> a, b = position_weights(torch.tensor([2]), max_len=3)
    >>> a.tolist(), b.tolist()  # j = 1, 2 and a padding position
    ([[0.5, 0.0, 0.0]], [[0.0, 1.0, 0.0]])
    """
    j = torch.arange(1, max_len + 1, device=lengths.device, dtype=dtype)  # (max_len,)
    J = lengths.to(dtype)[..., None]  # (..., 1)
    words = j <= J  # (..., max_len)
    J = J.clamp(min=1)  # an empty sentence has no words to weigh: avoid 0/0
    return torch.where(words, 1 - j / J, 0.0), torch.where(words, 2 * j / J - 1, 0.0)


def position_encoding(lengths: torch.Tensor, max_len: int, d: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The weights ``l_kj`` of sec. 4.1 for sentences of ``lengths`` words: (..., max_len, d).

    ``l_kj = (1 - j/J) - (k/d)(1 - 2j/J)`` for word ``j = 1..J`` of a sentence of ``J`` words and embedding
    component ``k = 1..d``; zero past each sentence's last word. On the device of ``lengths``.

    >>> position_encoding(torch.tensor([3]), max_len=4, d=2).shape  # (B, J, d); padding positions are 0
    torch.Size([1, 4, 2])
    """
    k = torch.arange(1, d + 1, device=lengths.device, dtype=dtype)  # (d,)
    a, b = position_weights(lengths, max_len, dtype)  # (..., max_len) each
    # l_kj = (1 - j/J) - (k/d)(1 - 2j/J) = a_j + (k/d) b_j
    return a[..., None] + (k / d) * b[..., None]


class MemN2N(nn.Module):
    """MemN2N with ``K`` hops (sec. 2.2), PE, TE and random noise (sec. 4.1) and linear start (sec. 4.2).

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

    Random noise (RN, sec. 4.1, with ``random_noise > 0``, only in training mode): "at training time we can
    randomly add 10% of empty memories to the stories", to regularise the temporal matrices. As in the authors'
    code, a story of ``n`` sentences gets ``r`` empty memories (``r`` drawn uniformly from
    ``0 .. ceil(random_noise * n)``) at random places among its sentences, which keep their order; each
    sentence's temporal index becomes its distance from the question in the longer story (at most
    ``memory_size - 1``). See :meth:`temporal_indices`.

    Differences from the paper: empty slots are masked out (the paper's fixed memory held zero vectors, which
    took part in the softmax), and so are the empty memories of RN, whose effect here is on the temporal
    indices alone; initial weights N(0, 0.1) as in sec. 4.2.

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

    # A^k and C^k (and T_A^k, T_C^k) sit at these places of the embedding (temporal) lists
    def _a_index(self, k: int) -> int:
        return self._hop(k) - 1 if self._adjacent else 0

    def _c_index(self, k: int) -> int:
        return self._hop(k) if self._adjacent else 1

    @property
    def _story_matrices(self) -> list[nn.Parameter]:
        """The distinct memory matrices, in list order: E_0 .. E_K (adjacent) or A, C (layerwise)."""
        # indexed one by one: a slice of a ParameterList makes new Parameters (cut off under functional_call)
        return [self.embeddings[i] for i in range(self.config.hops + 1 if self._adjacent else 2)]

    @property
    def _temporal_matrices(self) -> list[nn.Parameter]:
        return [self.temporal[i] for i in range(len(self.temporal))]

    def A(self, k: int) -> nn.Parameter:
        return self.embeddings[self._a_index(k)]

    def C(self, k: int) -> nn.Parameter:
        return self.embeddings[self._c_index(k)]

    @property
    def B(self) -> nn.Parameter:
        return self.embeddings[0 if self._adjacent else 2]

    @property
    def W(self) -> nn.Parameter:
        return self.embeddings[self.config.hops if self._adjacent else 3]

    def T_A(self, k: int) -> nn.Parameter | None:
        if not self.config.temporal_encoding:
            return None
        return self.temporal[self._a_index(k)]

    def T_C(self, k: int) -> nn.Parameter | None:
        if not self.config.temporal_encoding:
            return None
        return self.temporal[self._c_index(k)]

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"V={c.vocab_size}, d={c.embedding_dim}, memory_size={c.memory_size}, K={c.hops}, tying={c.tying!r}, "
            f"PE={c.position_encoding}, TE={c.temporal_encoding}, RN={c.random_noise}, linear_start={self.linear_start}"
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
        """Sentence vectors ``sum_j l_j * E x_ij`` (PE) or ``sum_j E x_ij`` (bag of words).

        ``ids`` (..., L) with 0 for padding; ``E`` (V, d) gives (..., d), a stack ``E`` (n, V, d) gives (..., n, d).
        Computed as weighted bags of words times ``E`` (see :func:`position_weights`): one small matmul per
        batch for every matrix at once, instead of a (..., L, d) lookup per matrix.
        """
        words = ids != 0  # (..., L); padding adds nothing whatever E[0] holds
        if self.config.position_encoding:
            a, b = position_weights(words.sum(-1), ids.shape[-1], E.dtype)  # (..., L) each
            weights = torch.stack((a, b), -2) * words[..., None, :]  # (..., P=2, L)
        else:
            weights = words.to(E.dtype)[..., None, :]  # (..., P=1, L)
        bags = weights.new_zeros(*weights.shape[:-1], E.shape[-2])  # (..., P, V)
        bags.scatter_add_(-1, ids[..., None, :].expand_as(weights), weights)
        stacked = E.dim() == 3
        n, V, d = E.shape if stacked else (1, *E.shape)
        x = (bags @ E.reshape(n, V, d).transpose(0, 1).reshape(V, n * d)).unflatten(-1, (n, d))  # (..., P, n, d)
        if self.config.position_encoding:
            k = torch.arange(1, d + 1, device=E.device, dtype=E.dtype)  # (d,)
            # sum_j l_kj E x_j = sum_j a_j E x_j + (k/d) sum_j b_j E x_j
            x = x[..., 0, :, :] + (k / d) * x[..., 1, :, :]  # (..., n, d)
        else:
            x = x[..., 0, :, :]
        return x if stacked else x[..., 0, :]

    def temporal_indices(self, filled: torch.Tensor) -> torch.Tensor:
        """The row of ``T_A``, ``T_C`` for every slot: (B, S) bool, True where a slot holds a sentence -> (B, S).

        Sec. 4.1: sentences are indexed in reverse order, by their distance from the question (the last
        sentence 0); empty slots get 0 (they get no attention). With random noise, in training mode, the
        distances are those in the story with empty memories inserted (see the class docstring).

        >>> model = MemN2N(MemN2NConfig(vocab_size=5, memory_size=4))
        >>> model.temporal_indices(torch.tensor([[True, True, True, False]])).tolist()
        [[2, 1, 0, 0]]
        """
        B, S = filled.shape
        n = filled.sum(-1, keepdim=True)  # (B, 1) sentences per story
        slots = torch.arange(S, device=filled.device)  # (S,)
        if not (self.training and self.config.random_noise > 0):
            return (n - 1 - slots).clamp(min=0)  # (B, S)
        # r ~ U{0 .. ceil(rn * n)} empty memories: the n sentences take n of the n + r places, in order
        most = torch.ceil(self.config.random_noise * n)  # (B, 1)
        r = (torch.rand(B, 1, device=filled.device) * (most + 1)).floor().long()  # (B, 1)
        places = n + r  # (B, 1)
        width = S + int(math.ceil(self.config.random_noise * S))  # room for every place of any story
        keys = torch.rand(B, width, device=filled.device)  # (B, width): a random order of the places ...
        keys = keys.masked_fill(torch.arange(width, device=filled.device) >= places, 2.0)  # ... that exist
        taken = keys.argsort(-1)[:, :S]  # (B, S): the first n are n distinct places, in random order
        taken = taken.masked_fill(slots >= n, width).sort(-1).values  # (B, S): those n places, ascending
        # sentence i (of n) is the (n - 1 - i)-th place counted from the question
        distance = taken.gather(1, (n - 1 - slots).clamp(min=0))  # (B, S)
        return distance.clamp(max=self.config.memory_size - 1).masked_fill(~filled, 0)

    def forward(self, stories: torch.Tensor, questions: torch.Tensor) -> torch.Tensor:
        self._check(stories, questions)
        filled = (stories != 0).any(-1)  # (B, S): slots holding a sentence
        distance = self.temporal_indices(filled)  # (B, S)

        # u^1 = B q  (with PE: sum_j l_j * B q_j)
        u = self._embed(questions, self.B)  # (B, d)
        # Every memory matrix embeds the story once: A^1 .. A^K and C^1 .. C^K are n distinct tensors
        memories = self._embed(stories, torch.stack(self._story_matrices))  # (B, S, n, d)
        if self.config.temporal_encoding:
            T = torch.stack(self._temporal_matrices)  # (n, memory_size, d)
            n, rows, d = T.shape
            # T(i) for every slot and matrix, as a one-hot matmul (its backward is a matmul, not a scatter)
            at = F.one_hot(distance, rows).to(T.dtype)  # (B, S, memory_size)
            memories = memories + (at @ T.transpose(0, 1).reshape(rows, n * d)).unflatten(-1, (n, d))
        memories = memories.unbind(2)  # n tensors (B, S, d)
        for k in range(1, self.config.hops + 1):
            # m_i = sum_j l_j * A^k x_ij + T_A^k(i);  c_i = sum_j l_j * C^k x_ij + T_C^k(i)
            m = memories[self._a_index(k)]  # (B, S, d)
            c = memories[self._c_index(k)]  # (B, S, d)
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
