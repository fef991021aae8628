"""memlib: PyTorch implementations of the memory architectures the book discusses.

Pure model code: no bokeh, ipywidgets or captum at import time.
"""

from memlib.recurrent import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell, reference_path
from memlib.tracing import Trace, record, trace, tracing
from memlib.train import FitResult, device, fit, save_checkpoint, seed_everything

__all__ = [
    "GRU",
    "LSTM",
    "RNN",
    "FitResult",
    "GRUCell",
    "LSTMCell",
    "RNNCell",
    "Trace",
    "device",
    "fit",
    "record",
    "reference_path",
    "save_checkpoint",
    "seed_everything",
    "trace",
    "tracing",
]
