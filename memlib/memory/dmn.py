"""Dynamic memory networks: the DMN of Kumar et al. 2016 and the DMN+ of Xiong, Merity & Socher 2016.

Kumar et al. 2016, "Ask Me Anything: Dynamic Memory Networks for Natural Language Processing", sec. 2:
an input module turns a story into facts, a question module turns the question into a vector ``q``, an
episodic memory module attends over the facts in several passes (each pass an episode ``e^i`` that
updates the memory ``m^i``), and an answer module reads the last memory.

Xiong et al. 2016, "Dynamic Memory Networks for Visual and Textual Question Answering", sec. 3 (DMN+):
sentences are read with the position encoding of Sukhbaatar et al. 2015 and mixed by a bidirectional
"input fusion" GRU; the attention gates become a softmax over facts that drives an attention-based GRU;
each pass updates the memory with its own ReLU layer.

Shapes: ``B`` batch, ``S`` sentences (facts), ``L`` words per sentence, ``V`` vocabulary, ``E`` word
embedding width, ``H`` hidden width, ``P`` passes.

Inputs are word ids (``memlib.tasks.babi.vectorize_babi`` makes them): stories (B, S, L) in story order,
questions (B, L'), id 0 padding after the words. A slot whose words are all 0 is empty: its gate is 0.

Trace names:

- ``dmn.facts`` (B, S, H), once: the facts ``c_t`` (DMN) or fused facts ``f_i`` (DMN+);
- ``dmn.question`` (B, H), once: ``q``;
- per pass ``i = 1..P``, in order: ``dmn.gates`` (B, S) (``g^i_t``: each in [0, 1]; for DMN+ a softmax
  over the non-empty facts), ``dmn.episode`` (B, H) (``e^i``) and ``dmn.memory`` (B, H) (``m^i``).

The GRUs inside (``memlib.GRU``, ``memlib.GRUCell``) record their own ``gru.*`` names too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from memlib.memory.memnet import position_encoding
from memlib.recurrent import GRU, GRUCell
from memlib.tracing import record
from memlib.validate import check_int

VARIANTS = ("dmn", "dmn+")


@dataclass(frozen=True)
class DMNConfig:
    """The sizes and variant of a :class:`DMN`, checked when made.

    >>> DMNConfig(vocab_size=20).variant
    'dmn'
    """
    vocab_size: int  # V, with id 0 for padding
    embedding_dim: int = 32  # E: small for a CPU (Kumar et al. used 80-dimensional GloVe vectors)
    hidden_size: int = 32  # H: small for a CPU (Kumar et al. used 80, Xiong et al. 80)
    passes: int = 3  # P: Xiong et al. use 3 passes on bAbI; two-fact tasks need at least 2
    variant: str = "dmn"  # "dmn" (Kumar et al. 2016) or "dmn+" (Xiong et al. 2016)

    def __post_init__(self) -> None:
        for name in ("vocab_size", "embedding_dim", "hidden_size", "passes"):
            value = getattr(self, name)
            check_int("DMNConfig", name, value, low=1)
        if self.vocab_size < 2:
            raise ValueError(f"DMNConfig: expected vocab_size >= 2 (padding and a word), got {self.vocab_size}")
        if self.variant not in VARIANTS:
            raise ValueError(f"DMNConfig: expected variant in {VARIANTS}, got {self.variant!r}")


class AttentionGRUCell(nn.Module):
    """The attention-based GRU of Xiong et al. 2016, sec. 3.3: the update gate is replaced by a given gate g.

    Weights (PyTorch's GRU form, gates stacked r, n): ``weight_ih`` (2H, I), ``weight_hh`` (2H, H),
    ``bias_ih`` and ``bias_hh`` (2H,).
    ``forward(x (B, I), h (B, H), g (B,)) -> h' (B, H)``.

    >>> cell = AttentionGRUCell(4, 8)
    >>> cell(torch.zeros(2, 4), torch.zeros(2, 8), torch.ones(2)).shape  # g = 1: a full GRU update
    torch.Size([2, 8])
    """

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.weight_ih = nn.Parameter(torch.empty(2 * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(2 * hidden_size, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(2 * hidden_size))
        self.bias_hh = nn.Parameter(torch.empty(2 * hidden_size))
        bound = 1.0 / math.sqrt(hidden_size)  # torch.nn's GRU initialisation
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)

    def forward(self, x: torch.Tensor, h: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return self.step(self.project(x), h, g)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """The input's share of the gates, ``[W^(r) x + b^(r); W x + b^(h)]``: (..., I) -> (..., 2H).

        It does not depend on ``h``: a whole sequence is projected at once, outside the loop over steps.
        """
        return F.linear(x, self.weight_ih, self.bias_ih)

    def step(self, x_proj: torch.Tensor, h: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """One step from a projected input ``x_proj`` (B, 2H) (:meth:`project`), ``h`` (B, H), ``g`` (B,)."""
        x_r, x_n = x_proj.chunk(2, dim=-1)  # 2 x (B, H)
        h_r, h_n = F.linear(h, self.weight_hh, self.bias_hh).chunk(2, dim=-1)  # 2 x (B, H)
        # r_i = sigma(W^(r) x_i + U^(r) h_{i-1} + b^(r))
        r = torch.sigmoid(x_r + h_r)
        # h~_i = tanh(W x_i + r_i * (U h_{i-1}) + b^(h))
        candidate = torch.tanh(x_n + r * h_n)
        # h_i = g_i * h~_i + (1 - g_i) * h_{i-1}
        g = g[:, None]  # (B, 1)
        return g * candidate + (1 - g) * h


class DMN(nn.Module):
    """A DMN (``variant="dmn"``) or DMN+ (``variant="dmn+"``) answering with one word.

    Input module. DMN (Kumar et al. sec. 2.1): one GRU reads the story's words in a row; the facts ``c_t``
    are its hidden states at the end of each sentence. DMN+ (Xiong et al. sec. 3.1): each sentence is
    ``sum_j l_j * w_j`` (position encoding), and a bidirectional GRU over sentences gives the facts
    ``f_i`` = forward + backward states.

    Question module (Kumar et al. sec. 2.2): a GRU over the question's words (embeddings shared with the
    input module); ``q`` is its last state.

    Episodic memory (``P`` passes, ``m^0 = q``). DMN (Kumar et al. sec. 2.3): a gate per fact
    ``g^i_t = G(c_t, m^{i-1}, q)``, an episode ``h_t = g_t GRU(c_t, h_{t-1}) + (1 - g_t) h_{t-1}``,
    ``e^i = h_S`` and ``m^i = GRU(e^i, m^{i-1})``. DMN+ (Xiong et al. sec. 3.3): gates are a softmax over
    facts, the episode is an attention GRU, and ``m^i = ReLU(W^i [m^{i-1}; e^i; q] + b)`` with untied ``W^i``.

    Answer module (Kumar et al. sec. 2.4), one word: ``a_0 = m^P``, ``y_0 = softmax(W^(a) a_0)``,
    ``a_1 = GRU([y_0, q], a_0)``, logits ``W^(a) a_1``.

    Not implemented: answers of several words, the supervision of gates by supporting facts (Kumar et al.
    trained bAbI with it), the stop-pass criterion, and dropout.

    ``forward(stories (B, S, L), questions (B, L')) -> logits (B, V)``.

    >>> model = DMN(DMNConfig(vocab_size=10, embedding_dim=8, hidden_size=8, passes=2))
    >>> model(torch.randint(1, 10, (2, 3, 5)), torch.randint(1, 10, (2, 5))).shape
    torch.Size([2, 10])
    """

    def __init__(self, config: DMNConfig):
        super().__init__()
        if not isinstance(config, DMNConfig):
            raise TypeError(f"DMN: expected a DMNConfig, got {type(config).__name__}")
        self.config = config
        V, E, H, P = config.vocab_size, config.embedding_dim, config.hidden_size, config.passes
        self.plus = config.variant == "dmn+"
        self.embedding = nn.Embedding(V, E, padding_idx=0)
        self.question_gru = GRU(E, H, batch_first=True)
        if self.plus:
            self.fusion_gru = GRU(E, H, batch_first=True, bidirectional=True)
            self.gate_1 = nn.Linear(4 * H, H)  # W^(1), b^(1)
            self.attention_gru = AttentionGRUCell(H, H)
            self.memory_update = nn.ModuleList([nn.Linear(3 * H, H) for _ in range(P)])  # W^i, b: untied per pass
        else:
            self.input_gru = GRU(E, H, batch_first=True)
            self.gate_bilinear = nn.Parameter(torch.empty(H, H))  # W^(b)
            nn.init.uniform_(self.gate_bilinear, -1 / math.sqrt(H), 1 / math.sqrt(H))
            self.gate_1 = nn.Linear(7 * H + 2, H)  # W^(1), b^(1)
            self.episode_gru = GRUCell(H, H)
            self.memory_gru = GRUCell(H, H)
        self.gate_2 = nn.Linear(H, 1)  # W^(2), b^(2)
        self.answer_gru = GRUCell(V + H, H)
        self.answer = nn.Linear(H, V)  # W^(a)

    def extra_repr(self) -> str:
        c = self.config
        return f"variant={c.variant!r}, V={c.vocab_size}, E={c.embedding_dim}, H={c.hidden_size}, passes={c.passes}"

    def _check(self, stories: object, questions: object) -> None:
        V = self.config.vocab_size
        for label, x, dims, shape in (("stories", stories, 3, "(B, S, L)"), ("questions", questions, 2, "(B, L)")):
            if not isinstance(x, torch.Tensor):
                raise TypeError(f"DMN: expected {label} as a tensor {shape} of word ids, got {type(x).__name__}")
            if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
                raise TypeError(f"DMN: expected {label} as an integer tensor of word ids, got {x.dtype}")
            if x.dim() != dims or 0 in x.shape:
                raise ValueError(f"DMN: expected {label} of shape {shape}, non-empty, got {tuple(x.shape)}")
            low, high = int(x.min()), int(x.max())
            if low < 0 or high >= V:
                raise ValueError(f"DMN: expected {label} word ids in [0, {V}), got min {low}, max {high}")
        if stories.shape[0] != questions.shape[0]:
            raise ValueError(
                f"DMN: expected questions for {stories.shape[0]} stories, got {questions.shape[0]} questions"
            )
        for label, empty in (("stories", ~(stories != 0).flatten(1).any(1)), ("questions", ~(questions != 0).any(1))):
            if empty.any():
                at = empty.nonzero().flatten().tolist()
                raise ValueError(
                    f"DMN: expected at least one word in every one of the {label}, got none at batch rows {at}"
                )

    # ---- input and question modules ----

    def _read(self, gru: GRU, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Run ``gru`` over (B, T, E) sequences of ``lengths``: states (B, T, D*H) (0 past each end), last (D, B, H)."""
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, last = gru(packed)
        return pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])[0], last

    def _facts(self, stories: torch.Tensor, filled: torch.Tensor) -> torch.Tensor:
        B, S, L = stories.shape
        H = self.config.hidden_size
        words = stories != 0  # (B, S, L)
        if self.plus:
            # f_i = sum_j l_j * w^i_j  (position encoding, Sukhbaatar et al. 2015 sec. 4.1)
            x = self.embedding(stories) * position_encoding(words.sum(-1), L, self.config.embedding_dim, self._dtype)
            sentences = x.sum(-2)  # (B, S, E)
            # f_i = GRU_fwd(f_i, ->f_{i-1}) + GRU_bwd(f_i, <-f_{i+1})  (input fusion layer)
            states, _ = self._read(self.fusion_gru, sentences, filled.sum(-1))  # (B, S, 2H)
            facts = states[..., :H] + states[..., H:]
        else:
            # The story's words in a row: pull each story's words to the front, in order.
            flat = stories.reshape(B, S * L)
            order = torch.sort((flat == 0).to(torch.uint8), dim=1, stable=True).indices  # words first, in order
            row = self.embedding(flat.gather(1, order))  # (B, S*L, E)
            # h_t = GRU(L[w_t], h_{t-1})
            states, _ = self._read(self.input_gru, row, words.flatten(1).sum(-1))  # (B, S*L, H)
            # c_t = the hidden state at the end of sentence t
            ends = (words.sum(-1).cumsum(-1) - 1).clamp(min=0)  # (B, S)
            facts = states.gather(1, ends[..., None].expand(B, S, H))  # (B, S, H)
        return facts * filled[..., None]

    @property
    def _dtype(self) -> torch.dtype:
        return self.embedding.weight.dtype

    # ---- episodic memory ----

    def _gates(self, c: torch.Tensor, m: torch.Tensor, q: torch.Tensor, filled: torch.Tensor) -> torch.Tensor:
        """g^i_t for every fact: (B, S, H) facts, (B, H) memory and question -> (B, S)."""
        m, q = m[:, None].expand_as(c), q[:, None].expand_as(c)  # (B, S, H)
        if self.plus:
            # z^t_i = [f_i * q; f_i * m^{t-1}; |f_i - q|; |f_i - m^{t-1}|]
            z = torch.cat([c * q, c * m, (c - q).abs(), (c - m).abs()], dim=-1)  # (B, S, 4H)
            # Z^t_i = W^(2) tanh(W^(1) z^t_i + b^(1)) + b^(2);  g^t_i = softmax over i of Z^t_i
            Z = self.gate_2(torch.tanh(self.gate_1(z))).squeeze(-1)  # (B, S)
            return torch.softmax(Z.masked_fill(~filled, float("-inf")), dim=-1)
        # z(c, m, q) = [c, m, q, c*q, c*m, |c - q|, |c - m|, c^T W^(b) q, c^T W^(b) m]
        cWq = torch.einsum("bsh,hk,bsk->bs", c, self.gate_bilinear, q)[..., None]  # (B, S, 1)
        cWm = torch.einsum("bsh,hk,bsk->bs", c, self.gate_bilinear, m)[..., None]  # (B, S, 1)
        z = torch.cat([c, m, q, c * q, c * m, (c - q).abs(), (c - m).abs(), cWq, cWm], dim=-1)  # (B, S, 7H+2)
        # G(c, m, q) = sigma(W^(2) tanh(W^(1) z(c, m, q) + b^(1)) + b^(2))
        g = torch.sigmoid(self.gate_2(torch.tanh(self.gate_1(z)))).squeeze(-1)  # (B, S)
        return g * filled

    def _episode(self, c: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """e^i: the last state of the gated GRU over the facts (B, S, H) with gates (B, S) -> (B, H)."""
        h = c.new_zeros(c.shape[0], self.config.hidden_size)
        if self.plus:
            x_proj = self.attention_gru.project(c)  # (B, S, 2H): every fact's input share, once
        for t in range(c.shape[1]):
            if self.plus:
                # h_i = g_i * h~_i + (1 - g_i) * h_{i-1}  (attention GRU)
                h = self.attention_gru.step(x_proj[:, t], h, g[:, t])
            else:
                # h^i_t = g^i_t GRU(c_t, h^i_{t-1}) + (1 - g^i_t) h^i_{t-1}
                gt = g[:, t, None]  # (B, 1)
                h = gt * self.episode_gru(c[:, t], h) + (1 - gt) * h
        return h

    def forward(self, stories: torch.Tensor, questions: torch.Tensor) -> torch.Tensor:
        self._check(stories, questions)
        filled = (stories != 0).any(-1)  # (B, S): slots holding a sentence
        c = self._facts(stories, filled)  # (B, S, H)
        # q_t = GRU(L[w^Q_t], q_{t-1});  q = q_{T_Q}
        _, last = self._read(self.question_gru, self.embedding(questions), (questions != 0).sum(-1))
        q = last[0]  # (B, H)
        record("dmn.facts", c)
        record("dmn.question", q)

        m = q  # m^0 = q
        for i in range(self.config.passes):
            g = self._gates(c, m, q, filled)  # (B, S)
            e = self._episode(c, g)  # (B, H)
            if self.plus:
                # m^t = ReLU(W^t [m^{t-1}; c^t; q] + b)
                m = torch.relu(self.memory_update[i](torch.cat([m, e, q], dim=-1)))
            else:
                # m^i = GRU(e^i, m^{i-1})
                m = self.memory_gru(e, m)
            record("dmn.gates", g)
            record("dmn.episode", e)
            record("dmn.memory", m)

        # a_0 = m^P;  y_0 = softmax(W^(a) a_0);  a_1 = GRU([y_0, q], a_0);  answer logits W^(a) a_1
        a = m
        y = torch.softmax(self.answer(a), dim=-1)  # (B, V)
        a = self.answer_gru(torch.cat([y, q], dim=-1), a)
        return self.answer(a)  # (B, V)
