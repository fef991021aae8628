"""Sequence models built from standard parts: a static CNN baseline and a recurrent regressor.

Shapes: ``B`` batch, ``T`` time, ``W`` the CNN's fixed window, ``D`` hidden width.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from memlib.recurrent import GRU, LSTM, RNN
from memlib.tracing import record, tracing

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


class SequenceRegressor(nn.Module):
    """A recurrent model (``cell`` in rnn/gru/lstm) reading one value per step, with a linear readout.

    The readout is applied to the hidden state after every step, so the model has a running
    answer at each step (traced as ``"readout"``); the output is the answer at each sequence's end.

    Trace names: ``"hidden"`` (B, T, D) hidden states, ``"readout"`` (B, T) running answers.
    """

    def __init__(self, cell: str = "gru", hidden_size: int = 32, num_layers: int = 1):
        super().__init__()
        if cell not in _RECURRENT:
            raise ValueError(f"SequenceRegressor: expected cell in {sorted(_RECURRENT)}, got {cell!r}")
        self.cell = cell
        self.rnn = _RECURRENT[cell](1, hidden_size, num_layers=num_layers, batch_first=True)
        self.head = nn.Linear(hidden_size, 1)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        lengths = _check_sequences("SequenceRegressor", x, lengths)
        packed = pack_padded_sequence(x[..., None], lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.rnn(packed)
        hidden, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])  # (B, T, D)
        last = hidden[torch.arange(x.shape[0], device=x.device), lengths.to(x.device) - 1]  # (B, D)
        if tracing():
            record("hidden", hidden)
            record("readout", self.head(hidden).squeeze(-1))  # (B, T)
        return self.head(last).squeeze(1)  # (B,)
