"""memlib: PyTorch implementations of the memory architectures the book discusses.

Pure model code: no bokeh, ipywidgets or captum at import time.
"""

from memlib.advise import Advice, Candidate, advise
from memlib.attention import (
    AdditiveAttention,
    LocalAttention,
    LuongAttention,
    MultiHeadAttention,
    causal_mask,
    padding_mask,
    scaled_dot_product_attention,
    window_mask,
)
from memlib.efficient import BigBirdAttention, LinformerAttention, SlidingWindowAttention
from memlib.memory import DNC, MANN, NTM, HopfieldLayer
from memlib.recurrent import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell
from memlib.tracing import Trace, record, reference_path, trace, tracing
from memlib.train import FitResult, device, fit, save_checkpoint, seed_everything
from memlib.transformer import (
    CausalLM,
    LearnedPositionalEncoding,
    SinusoidalPositionalEncoding,
    TransformerEncoder,
    TransformerEncoderLayer,
    TransformerXL,
)

__all__ = [
    "Advice",
    "Candidate",
    "AdditiveAttention",
    "BigBirdAttention",
    "CausalLM",
    "DNC",
    "FitResult",
    "GRU",
    "GRUCell",
    "HopfieldLayer",
    "LSTM",
    "LSTMCell",
    "LearnedPositionalEncoding",
    "LinformerAttention",
    "LocalAttention",
    "LuongAttention",
    "MANN",
    "MultiHeadAttention",
    "NTM",
    "RNN",
    "RNNCell",
    "SinusoidalPositionalEncoding",
    "SlidingWindowAttention",
    "Trace",
    "TransformerEncoder",
    "TransformerEncoderLayer",
    "TransformerXL",
    "advise",
    "causal_mask",
    "device",
    "fit",
    "padding_mask",
    "record",
    "reference_path",
    "save_checkpoint",
    "scaled_dot_product_attention",
    "seed_everything",
    "trace",
    "tracing",
    "window_mask",
]
