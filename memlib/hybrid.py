"""Sequence models built from standard parts: a static CNN baseline, a recurrent regressor, an encoder-decoder,
a CNN-LSTM, and text classifiers over token ids (recurrent or Transformer).

Shapes: ``B`` batch, ``T`` time (target steps for ``Seq2Seq``), ``W`` the CNN's fixed window, ``D`` hidden width,
``S`` source length, ``V`` target vocabulary, ``De`` embedding width; for ``CNNLSTM``: ``I`` input channels,
``C`` CNN channels, ``T'`` = T // pool**blocks CNN steps, ``K`` classes.

``CNNLSTM`` trace names: ``cnnlstm.features`` (B, T', C) what the CNN passes to the LSTM, ``cnnlstm.hidden``
(B, T', D) the LSTM's hidden states, ``cnnlstm.logits`` (B, T', K) the running logits after each CNN step.

``Seq2Seq`` trace names: ``seq2seq.attention`` (B, S), the decoder's attention weights, one value per decoder
step (its attention module also records ``additive.weights`` or ``luong.weights``, and its cells their gates).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from memlib.attention import AdditiveAttention, LocalAttention, LuongAttention, padding_mask
from memlib.recurrent import GRU, LSTM, RNN, GRUCell, LSTMCell
from memlib.tracing import record, tracing
from memlib.transformer import SinusoidalPositionalEncoding, TransformerEncoder, TransformerEncoderLayer
from memlib.validate import check_float, check_int, check_tokens, fail

_RECURRENT = {"rnn": RNN, "gru": GRU, "lstm": LSTM}


def _check_sequences(name: str, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """Validate (B, T) inputs and return lengths (B,) on the CPU (what packing needs)."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor of shape (B, T), got {getattr(x, 'dtype', type(x))}")
    if x.dim() != 2:
        raise ValueError(f"{name}: expected input of shape (B, T), got {tuple(x.shape)}")
    if x.shape[1] == 0:
        raise ValueError(f"{name}: expected at least one time step, got shape {tuple(x.shape)}")
    if lengths is None:
        return torch.full((x.shape[0],), x.shape[1], dtype=torch.long)
    if not isinstance(lengths, torch.Tensor) or lengths.is_floating_point():
        raise TypeError(f"{name}: expected lengths as an integer tensor of shape (B,), got {type(lengths).__name__}")
    if lengths.shape != (x.shape[0],):
        raise ValueError(f"{name}: expected lengths of shape ({x.shape[0]},), got {tuple(lengths.shape)}")
    lengths = lengths.cpu().long()
    if lengths.min() < 1 or lengths.max() > x.shape[1]:
        raise ValueError(
            f"{name}: expected lengths in [1, {x.shape[1]}], got min {int(lengths.min())}, max {int(lengths.max())}"
        )
    return lengths


class WindowCNN(nn.Module):
    """A static model: a 1-D CNN over a fixed window of ``window`` steps.

    Shorter inputs are zero padded and longer ones truncated to the window: the only ways a
    fixed-size model can take them. What lies past the window never reaches the output.

    >>> WindowCNN(window=8, channels=4)(torch.zeros(2, 20)).shape
    torch.Size([2])
    """

    def __init__(self, window: int = 20, channels: int = 32, kernel_size: int = 3):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"WindowCNN: expected an odd kernel_size (same-length convolutions), got {kernel_size}")
        self.window = window
        self.conv = nn.Sequential(
            nn.Conv1d(1, channels, kernel_size, padding=kernel_size // 2),
            nn.ReLU(),
            nn.Conv1d(channels, channels, kernel_size, padding=kernel_size // 2),
            nn.ReLU(),
        )
        self.head = nn.Linear(channels * window, 1)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        _check_sequences("WindowCNN", x, lengths)
        B, T = x.shape
        if T >= self.window:
            x = x[:, : self.window]  # (B, W): steps past the window are dropped
        else:
            x = nn.functional.pad(x, (0, self.window - T))  # (B, W)
        features = self.conv(x[:, None, :])  # (B, C, W)
        return self.head(features.flatten(1)).squeeze(1)  # (B,)


class _RecurrentReader(nn.Module):
    """A recurrent stack (``cell`` in rnn/gru/lstm) reading ``input_size`` features per step, with a linear readout.

    Input (B, T, I), or (B, T) when ``input_size`` is 1; optional ``lengths`` (B,) for sequences that
    end early (the answer is read after each sequence's own last step).
    """

    def __init__(self, cell: str, input_size: int, hidden_size: int, num_layers: int, out_features: int):
        super().__init__()
        name = type(self).__name__
        if cell not in _RECURRENT:
            raise ValueError(f"{name}: expected cell in {sorted(_RECURRENT)}, got {cell!r}")
        for arg, value in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
            check_int(name, arg, value, low=1, expected=f"{arg} to be a positive int")
        self.cell = cell
        self.input_size = input_size
        self.rnn = _RECURRENT[cell](input_size, hidden_size, num_layers=num_layers, batch_first=True)
        self.head = nn.Linear(hidden_size, out_features)

    def _read(self, x: torch.Tensor, lengths: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Hidden states of every step (B, T, D) and of each sequence's last step (B, D)."""
        name = type(self).__name__
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name}: expected a floating-point tensor of shape (B, T, I), got {type(x).__name__}")
        if x.dim() == 2 and self.input_size == 1:
            x = x[..., None]  # (B, T, 1)
        if x.dim() != 3 or x.shape[-1] != self.input_size:
            one = " or (B, T)" if self.input_size == 1 else ""
            raise ValueError(f"{name}: expected input of shape (B, T, {self.input_size}){one}, got {tuple(x.shape)}")
        if lengths is None:  # every sequence runs to the end: no packing (it slows torch's CPU kernels)
            _check_sequences(name, x[..., 0], None)
            hidden, _ = self.rnn(x)  # (B, T, D)
            return hidden, hidden[:, -1]
        lengths = _check_sequences(name, x[..., 0], lengths)
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.rnn(packed)
        hidden, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])  # (B, T, D)
        last = hidden[torch.arange(x.shape[0], device=x.device), lengths.to(x.device) - 1]  # (B, D)
        return hidden, last


class SequenceRegressor(_RecurrentReader):
    """A recurrent model reading ``input_size`` values per step and answering one number per sequence.

    The readout is applied to the hidden state after every step, so the model has a running
    answer at each step (traced as ``"readout"``); the output is the answer at each sequence's end (B,).

    Trace names: ``"hidden"`` (B, T, D) hidden states, ``"readout"`` (B, T) running answers.

    >>> SequenceRegressor("lstm", hidden_size=8)(torch.zeros(2, 20, 1)).shape
    torch.Size([2])
    """

    def __init__(self, cell: str = "gru", hidden_size: int = 32, num_layers: int = 1, input_size: int = 1):
        super().__init__(cell, input_size, hidden_size, num_layers, out_features=1)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        hidden, last = self._read(x, lengths)
        if tracing():
            record("hidden", hidden)
            record("readout", self.head(hidden).squeeze(-1))  # (B, T)
        return self.head(last).squeeze(1)  # (B,)


class SequenceClassifier(_RecurrentReader):
    """A recurrent model reading ``input_size`` features per step and classifying each sequence.

    Returns logits (B, C) read from the hidden state after each sequence's last step.

    Trace names: ``"hidden"`` (B, T, D) hidden states, ``"logits"`` (B, T, C) the running logits.

    >>> classifier = SequenceClassifier("gru", input_size=4, hidden_size=8, num_classes=3)
    >>> classifier(torch.zeros(2, 6, 4), lengths=torch.tensor([6, 2])).shape
    torch.Size([2, 3])
    """

    def __init__(self, cell: str, input_size: int, hidden_size: int, num_classes: int, num_layers: int = 1):
        check_int("SequenceClassifier", "num_classes", num_classes, low=2, expected="num_classes to be an int >= 2")
        super().__init__(cell, input_size, hidden_size, num_layers, out_features=num_classes)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        hidden, last = self._read(x, lengths)
        if tracing():
            record("hidden", hidden)
            record("logits", self.head(hidden))  # (B, T, C)
        return self.head(last)  # (B, C)


class CNNLSTM(nn.Module):
    """A 1-D CNN that turns a signal into a shorter sequence of local features, and an LSTM that reads them.

    The CNN (``blocks`` of Conv1d -> BatchNorm -> ReLU -> MaxPool(``pool``)) sees only a short stretch of the
    signal per output step (its receptive field); the LSTM (``memlib.LSTM``) carries information across all of
    them, and a linear readout of its last hidden state gives the class logits. The usual division of labour
    for ECG: the CNN describes beats, the LSTM compares them over time.

    Input (B, T) or (B, T, I); ``T`` must be at least ``pool ** blocks`` (one CNN step). Returns logits (B, K).

    >>> CNNLSTM(num_classes=3, channels=4, hidden_size=8)(torch.zeros(2, 64)).shape
    torch.Size([2, 3])
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 1,
        channels: int = 16,
        kernel_size: int = 7,
        pool: int = 4,
        blocks: int = 2,
        hidden_size: int = 32,
        num_layers: int = 1,
    ):
        super().__init__()
        name = type(self).__name__
        check_int(name, "num_classes", num_classes, low=2, expected="num_classes to be an int >= 2")
        for arg, value in (
            ("in_channels", in_channels),
            ("channels", channels),
            ("pool", pool),
            ("blocks", blocks),
            ("hidden_size", hidden_size),
            ("num_layers", num_layers),
        ):
            check_int(name, arg, value, low=1, expected=f"{arg} to be a positive int")
        odd = "an odd kernel_size (same-length convolutions)"
        if check_int(name, "kernel_size", kernel_size, expected=odd) % 2 != 1:
            fail(name, odd, repr(kernel_size))
        self.in_channels, self.stride = in_channels, pool**blocks
        layers: list[nn.Module] = []
        for b in range(blocks):
            layers += [
                nn.Conv1d(in_channels if b == 0 else channels, channels, kernel_size, padding=kernel_size // 2),
                nn.BatchNorm1d(channels),
                nn.ReLU(),
                nn.MaxPool1d(pool),
            ]
        self.cnn = nn.Sequential(*layers)
        self.lstm = LSTM(channels, hidden_size, num_layers=num_layers, batch_first=True)
        self.head = nn.Linear(hidden_size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        name = type(self).__name__
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise TypeError(f"{name}: expected a floating-point tensor, got {getattr(x, 'dtype', type(x))}")
        if x.dim() == 2 and self.in_channels == 1:
            x = x[..., None]  # (B, T, 1)
        if x.dim() != 3 or x.shape[-1] != self.in_channels:
            one = " or (B, T)" if self.in_channels == 1 else ""
            raise ValueError(f"{name}: expected input of shape (B, T, {self.in_channels}){one}, got {tuple(x.shape)}")
        if x.shape[1] < self.stride:
            raise ValueError(f"{name}: expected at least {self.stride} time steps (one CNN step), got {x.shape[1]}")
        features = self.cnn(x.transpose(1, 2)).transpose(1, 2)  # (B, I, T) -> (B, C, T') -> (B, T', C)
        hidden, _ = self.lstm(features)  # (B, T', D)
        if tracing():
            record("cnnlstm.features", features)
            record("cnnlstm.hidden", hidden)
            record("cnnlstm.logits", self.head(hidden))  # (B, T', K)
        return self.head(hidden[:, -1])  # (B, K)


_SEQ2SEQ_CELLS = {"gru": (GRU, GRUCell), "lstm": (LSTM, LSTMCell)}
_SEQ2SEQ_ATTENTION = (None, "bahdanau", "luong", "local-m", "local-p")


class _Source(NamedTuple):
    """What the decoder attends to: encoder outputs (B, S, D), padding mask (B, S) or None, lengths (B,)."""

    outputs: torch.Tensor
    mask: torch.Tensor | None
    lengths: torch.Tensor


class Seq2Seq(nn.Module):
    """An encoder-decoder RNN (Sutskever, Vinyals & Le 2014; Cho et al. 2014), with or without attention.

    The encoder (memlib ``GRU`` or ``LSTM``) reads the embedded source; its final state starts the decoder (a
    ``GRUCell`` or ``LSTMCell``), which emits one target token per step from the previous one (``bos_index`` first).
    ``attention`` chooses how the decoder reads the encoder's outputs h_1..h_S:

    - ``None``: it does not; everything passes through the final state (the bottleneck attention removes).
    - ``"bahdanau"`` (Bahdanau, Cho & Bengio 2015): c_t from the previous state s_{t-1} with
      :class:`~memlib.attention.AdditiveAttention`; s_t = cell([y_{t-1}; c_t], s_{t-1}); logits = W_o [s_t; c_t].
    - ``"luong"``, ``"local-m"``, ``"local-p"`` (Luong, Pham & Manning 2015): h_t = cell([y_{t-1}; h~_{t-1}], h_{t-1})
      (input feeding, section 3.3); c_t from h_t with :class:`~memlib.attention.LuongAttention` ("general" score)
      or :class:`~memlib.attention.LocalAttention` (``window`` D; local-m centres on p_t = min(t, S_b - 1));
      h~_t = tanh(W_c [c_t; h_t]); logits = W_s h~_t.

    Parameters: ``src_embedding``, ``tgt_embedding``, ``encoder``, ``decoder``, ``attention`` (unless None),
    ``combine`` (W_c, Luong styles), ``out``. One layer, one direction (Bahdanau's encoder was bidirectional).
    ``forward(src (B, S), tgt (B, T), src_lengths (B,) = None, teacher_forcing = 1.0) -> logits (B, T, V)``: step t
    reads tgt[:, t - 1] with probability ``teacher_forcing``, else its own previous prediction.
    ``generate(src, max_len, src_lengths=None) -> (B, max_len)`` greedy tokens. Traced as ``seq2seq.attention``.

    >>> model = Seq2Seq(src_vocab=10, tgt_vocab=12, embed_dim=8, hidden_size=16, attention="bahdanau")
    >>> model(torch.randint(1, 10, (2, 5)), torch.randint(1, 12, (2, 4))).shape  # logits (B, T, V)
    torch.Size([2, 4, 12])
    """

    def __init__(
        self,
        src_vocab: int,
        tgt_vocab: int,
        embed_dim: int = 32,
        hidden_size: int = 64,
        cell: str = "gru",
        attention: str | None = None,
        window: int = 2,
        bos_index: int = 0,
    ):
        super().__init__()
        name = type(self).__name__
        if cell not in _SEQ2SEQ_CELLS:
            raise ValueError(f"{name}: expected cell in {sorted(_SEQ2SEQ_CELLS)}, got {cell!r}")
        if attention not in _SEQ2SEQ_ATTENTION:
            raise ValueError(f"{name}: expected attention in {_SEQ2SEQ_ATTENTION}, got {attention!r}")
        check_int(name, "bos_index", bos_index, low=0, high=tgt_vocab - 1, expected=f"bos_index in [0, {tgt_vocab})",
                  got=str(bos_index))
        self.src_vocab, self.tgt_vocab, self.bos_index = src_vocab, tgt_vocab, bos_index
        self.cell, self.attention_kind, self.hidden_size = cell, attention, hidden_size
        stack, step = _SEQ2SEQ_CELLS[cell]
        self.src_embedding = nn.Embedding(src_vocab, embed_dim)
        self.tgt_embedding = nn.Embedding(tgt_vocab, embed_dim)
        self.encoder = stack(embed_dim, hidden_size, batch_first=True)
        # With attention, each step also reads a second vector: c_t (Bahdanau) or h~_{t-1} (Luong's input feeding).
        self.decoder = step(embed_dim + (0 if attention is None else hidden_size), hidden_size)
        if attention == "bahdanau":
            self.attention = AdditiveAttention(hidden_size, hidden_size, hidden_size)
        elif attention == "luong":
            self.attention = LuongAttention(hidden_size, hidden_size, "general")
        elif attention is not None:
            self.attention = LocalAttention(hidden_size, hidden_size, window, mode=attention)
        if attention in ("luong", "local-m", "local-p"):
            self.combine = nn.Linear(2 * hidden_size, hidden_size, bias=False)
        self.out = nn.Linear(2 * hidden_size if attention == "bahdanau" else hidden_size, tgt_vocab)

    def extra_repr(self) -> str:
        return f"cell={self.cell!r}, attention={self.attention_kind!r}"

    def _encode(self, src: torch.Tensor, src_lengths: torch.Tensor | None) -> tuple[tuple[torch.Tensor, ...], _Source]:
        """The decoder's initial state, and what it attends to: outputs (B, S, D), padding mask (B, S), lengths."""
        name = type(self).__name__
        check_tokens(name, src, self.src_vocab)
        B, S = src.shape
        x = self.src_embedding(src)  # (B, S, De)
        if src_lengths is None:
            outputs, state = self.encoder(x)
            lengths, mask = torch.full((B,), S, device=src.device), None
        else:
            if not isinstance(src_lengths, torch.Tensor) or src_lengths.is_floating_point():
                got = src_lengths.dtype if isinstance(src_lengths, torch.Tensor) else type(src_lengths).__name__
                raise TypeError(f"{name}: expected src_lengths as an integer tensor (B,), got {got}")
            if src_lengths.shape != (B,):
                raise ValueError(f"{name}: expected src_lengths of shape ({B},), got {tuple(src_lengths.shape)}")
            if src_lengths.min() < 1 or src_lengths.max() > S:
                raise ValueError(f"{name}: expected src_lengths in [1, {S}], got {src_lengths.tolist()}")
            packed = pack_padded_sequence(x, src_lengths.cpu(), batch_first=True, enforce_sorted=False)
            outputs, state = self.encoder(packed)
            outputs, _ = pad_packed_sequence(outputs, batch_first=True, total_length=S)  # (B, S, D)
            lengths = src_lengths.to(src.device)
            mask = padding_mask(lengths, S)  # (B, S): True at padding
        state = tuple(s[0] for s in state) if self.cell == "lstm" else (state[0],)  # (B, D) each
        return state, _Source(outputs, mask, lengths)

    def _step(
        self,
        y_prev: torch.Tensor,
        state: tuple[torch.Tensor, ...],
        feed: torch.Tensor,
        source: _Source,
        t: int,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...], torch.Tensor]:
        """One decoder step: previous tokens (B,) -> logits (B, V), the new state and the vector fed forward."""
        outputs, mask, lengths = source
        e = self.tgt_embedding(y_prev)  # (B, De)

        def cell(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
            new = self.decoder(x, state if self.cell == "lstm" else state[0])
            return tuple(new) if self.cell == "lstm" else (new,)

        if self.attention_kind is None:
            state = cell(e)
            return self.out(state[0]), state, feed
        if self.attention_kind == "bahdanau":
            # c_t = sum_j alpha_tj h_j, alpha_t from s_{t-1}
            context, weights = self.attention(state[0], outputs, key_padding_mask=mask)
            # s_t = f(s_{t-1}, y_{t-1}, c_t)
            state = cell(torch.cat([e, context], dim=1))
            record("seq2seq.attention", weights)
            return self.out(torch.cat([state[0], context], dim=1)), state, feed
        # h_t = f(h_{t-1}, [y_{t-1}; h~_{t-1}])  (input feeding)
        state = cell(torch.cat([e, feed], dim=1))
        h = state[0]
        if self.attention_kind == "local-m":
            positions = (lengths - 1).clamp(max=t)  # p_t = t, kept inside each source
            context, weights = self.attention(h, outputs, positions=positions, key_padding_mask=mask)
        else:
            context, weights = self.attention(h, outputs, key_padding_mask=mask)
        # h~_t = tanh(W_c [c_t; h_t])
        feed = torch.tanh(self.combine(torch.cat([context, h], dim=1)))
        record("seq2seq.attention", weights)
        return self.out(feed), state, feed

    def forward(
        self,
        src: torch.Tensor,
        tgt: torch.Tensor,
        src_lengths: torch.Tensor | None = None,
        teacher_forcing: float = 1.0,
    ) -> torch.Tensor:
        name = type(self).__name__
        check_tokens(name, tgt, self.tgt_vocab)
        if tgt.shape[0] != src.shape[0]:
            raise ValueError(f"{name}: expected src and tgt with one batch size, got {src.shape[0]} and {tgt.shape[0]}")
        check_float(name, "teacher_forcing", teacher_forcing, low=0, high=1, expected="teacher_forcing in [0, 1]")
        state, source = self._encode(src, src_lengths)
        feed = source.outputs.new_zeros(src.shape[0], self.hidden_size)  # h~_0 = 0
        y = torch.full_like(tgt[:, 0], self.bos_index)
        logits = []
        for t in range(tgt.shape[1]):
            step_logits, state, feed = self._step(y, state, feed, source, t)
            logits.append(step_logits)
            teacher = teacher_forcing == 1.0 or (teacher_forcing > 0 and torch.rand(()) < teacher_forcing)
            y = tgt[:, t] if teacher else step_logits.argmax(-1)
        return torch.stack(logits, dim=1)  # (B, T, V)

    @torch.no_grad()
    def generate(self, src: torch.Tensor, max_len: int, src_lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Greedy decoding: each step feeds back its most likely token. Returns (B, max_len) token ids."""
        check_int(type(self).__name__, "max_len", max_len, low=1)
        state, source = self._encode(src, src_lengths)
        feed = source.outputs.new_zeros(src.shape[0], self.hidden_size)
        y = torch.full((src.shape[0],), self.bos_index, dtype=torch.long, device=src.device)
        tokens = []
        for t in range(max_len):
            step_logits, state, feed = self._step(y, state, feed, source, t)
            y = step_logits.argmax(-1)
            tokens.append(y)
        return torch.stack(tokens, dim=1)


# ---------------------------------------------------------------------------------------------
# Classifiers over token ids: an embedding, then a memlib recurrent stack or Transformer encoder.
# ---------------------------------------------------------------------------------------------


class RecurrentTextClassifier(nn.Module):
    """Embedding (V -> De, ``<pad>`` = 0 kept at zero) then :class:`~memlib.hybrid.SequenceClassifier`
    (``cell`` "lstm" or "gru"): logits (B, 2) from the hidden state after each snippet's last token.

    ``forward(tokens (B, T) long, lengths (B,) = None) -> (B, num_classes)``.

    >>> RecurrentTextClassifier(vocab_size=20, embed_dim=8, hidden_size=8)(torch.randint(1, 20, (2, 5))).shape
    torch.Size([2, 2])
    """

    def __init__(
        self,
        vocab_size: int,
        cell: str = "lstm",
        embed_dim: int = 64,
        hidden_size: int = 64,
        num_classes: int = 2,
        dropout: float = 0.3,
    ):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.dropout = nn.Dropout(dropout)
        self.classifier = SequenceClassifier(cell, embed_dim, hidden_size, num_classes)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        x = self.dropout(self.embedding(tokens))  # (B, T, De)
        return self.classifier(x, lengths)  # (B, C)


class TransformerTextClassifier(nn.Module):
    """Embedding (scaled by sqrt(D)) + sinusoidal positions, a memlib
    :class:`~memlib.transformer.TransformerEncoder` with the padding masked out, the mean of the real tokens' outputs,
    a linear readout.

    ``forward(tokens (B, T) long, lengths (B,) = None) -> (B, num_classes)``.

    >>> model = TransformerTextClassifier(vocab_size=20, d_model=8, nhead=2, dim_feedforward=16)
    >>> model(torch.randint(1, 20, (2, 5)), lengths=torch.tensor([5, 3])).shape
    torch.Size([2, 2])
    """

    def __init__(
        self,
        vocab_size: int,
        d_model: int = 64,
        nhead: int = 4,
        num_layers: int = 1,
        dim_feedforward: int = 128,
        num_classes: int = 2,
        dropout: float = 0.1,
    ):
        super().__init__()
        self.d_model = d_model
        self.embedding = nn.Embedding(vocab_size, d_model, padding_idx=0)
        self.positions = SinusoidalPositionalEncoding(d_model, dropout=dropout, batch_first=True)
        layer = TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout=dropout, batch_first=True)
        self.encoder = TransformerEncoder(layer, num_layers)
        self.head = nn.Linear(d_model, num_classes)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        B, T = tokens.shape
        if lengths is None:
            lengths = torch.full((B,), T, dtype=torch.long, device=tokens.device)
        real = torch.arange(T, device=tokens.device)[None] < lengths.to(tokens.device)[:, None]  # (B, T)
        x = self.positions(self.embedding(tokens) * self.d_model**0.5)  # (B, T, D)
        h = self.encoder(x, src_key_padding_mask=~real)  # (B, T, D)
        pooled = (h * real[..., None]).sum(1) / real.sum(1, keepdim=True)  # (B, D): mean over real tokens
        return self.head(pooled)  # (B, C)
