"""memlib: PyTorch implementations of the memory architectures the book discusses.

Pure model code: no bokeh, ipywidgets or captum at import time.
"""

from memlib.tracing import Trace, record, trace, tracing
from memlib.train import FitResult, device, fit, save_checkpoint, seed_everything

__all__ = [
    "FitResult",
    "Trace",
    "device",
    "fit",
    "record",
    "save_checkpoint",
    "seed_everything",
    "trace",
    "tracing",
]
