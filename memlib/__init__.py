"""memlib: PyTorch implementations of the memory architectures the book discusses.

Pure model code: no bokeh, ipywidgets or captum at import time.

The names below are grouped as the book meets them: recurrent networks, attention, Transformers, external
memory, hybrids; then the tools (training, measurement, tracing, advice). Areas with many names of their own
are modules: ``memlib.claims`` (the article's claims, checked), ``memlib.tasks`` (data), ``memlib.compress``,
``memlib.interpret``, ``memlib.lifelong``,
``memlib.biology``, ``memlib.neuromorphic``, ``memlib.hardware``, ``memlib.profiling``, ``memlib.validate``.

>>> import torch, memlib
>>> memlib.LSTM(4, 8)(torch.zeros(5, 2, 4))[0].shape
torch.Size([5, 2, 8])
"""

from inspect import signature as _signature
from types import ModuleType as _ModuleType

from memlib import (
    advise,
    biology,
    claims,
    compress,
    hardware,
    interpret,
    lifelong,
    neuromorphic,
    profiling,
    tasks,
    tracing,
    validate,
)
from memlib.advise import Advice, Candidate
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
from memlib.captioning import ShowAndTell, ShowAttendTell
from memlib.efficient import BigBirdAttention, LinformerAttention, SlidingWindowAttention
from memlib.hardware import (
    GPU,
    MemoryEstimate,
    estimate_training_memory,
    fits,
    gpu,
    largest_batch,
    recommended_ram,
    usable_memory,
)
from memlib.hybrid import (
    CNNLSTM,
    RecurrentTextClassifier,
    Seq2Seq,
    SequenceClassifier,
    SequenceRegressor,
    TransformerTextClassifier,
    WindowCNN,
)
from memlib.memory import (
    DMN,
    DNC,
    MANN,
    NSM,
    NTM,
    DMNConfig,
    HopfieldLayer,
    MemN2N,
    MemN2NConfig,
    NSMConfig,
    SlotMemory,
)
from memlib.profiling import peak_memory, time_call
from memlib.recurrent import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell
from memlib.tracing import Trace, record, reference_path, trace
from memlib.train import FitResult, device, fit, save_checkpoint, seed_everything, train_classifier
from memlib.transformer import (
    CausalLM,
    LearnedPositionalEncoding,
    RelativeMultiHeadAttention,
    SinusoidalPositionalEncoding,
    TransformerEncoder,
    TransformerEncoderLayer,
    TransformerXL,
    TransformerXLLayer,
    sinusoidal_encoding,
)


class _CallableModule(_ModuleType):
    """A module that also runs its namesake function: ``memlib.advise(...)`` is ``memlib.advise.advise(...)``.

    ``memlib.advise`` and ``memlib.tracing`` are both a module and that module's main function. Binding the
    function to the package's attribute hid the module (``import memlib.advise as m`` gave the function, and
    ``memlib.advise.load_table`` failed); the module, made callable, serves both uses.

    >>> import memlib
    >>> memlib.tracing()  # runs memlib.tracing.tracing
    False
    >>> memlib.advise.load_table.__module__  # and is still the module
    'memlib.advise'
    >>> list(_signature(memlib.advise).parameters)[:2]  # the function's signature, for help() and the API pages
    ['seq_len', 'dependency_range']
    """

    def __call__(self, *args, **kwargs):
        return getattr(self, self.__name__.rpartition(".")[2])(*args, **kwargs)


for _module in (advise, tracing):
    _module.__class__ = _CallableModule
    _module.__signature__ = _signature(getattr(_module, _module.__name__.rpartition(".")[2]))
del _module

# Grouped as the book meets them; the reference pages (book/api/) follow the same groups.
__all__ = [
    # recurrent
    "RNNCell",
    "LSTMCell",
    "GRUCell",
    "RNN",
    "LSTM",
    "GRU",
    # attention
    "scaled_dot_product_attention",
    "causal_mask",
    "padding_mask",
    "window_mask",
    "AdditiveAttention",
    "LuongAttention",
    "LocalAttention",
    "MultiHeadAttention",
    # efficient attention
    "SlidingWindowAttention",
    "BigBirdAttention",
    "LinformerAttention",
    # transformers
    "sinusoidal_encoding",
    "SinusoidalPositionalEncoding",
    "LearnedPositionalEncoding",
    "TransformerEncoderLayer",
    "TransformerEncoder",
    "CausalLM",
    "RelativeMultiHeadAttention",
    "TransformerXLLayer",
    "TransformerXL",
    # external memory
    "NTM",
    "DNC",
    "MANN",
    "MemN2N",
    "MemN2NConfig",
    "DMN",
    "DMNConfig",
    "NSM",
    "NSMConfig",
    "SlotMemory",
    "HopfieldLayer",
    # hybrids
    "WindowCNN",
    "SequenceRegressor",
    "SequenceClassifier",
    "CNNLSTM",
    "Seq2Seq",
    "RecurrentTextClassifier",
    "TransformerTextClassifier",
    # image captioning
    "ShowAttendTell",
    "ShowAndTell",
    # training
    "device",
    "seed_everything",
    "fit",
    "FitResult",
    "save_checkpoint",
    "train_classifier",
    # measurement
    "time_call",
    "peak_memory",
    "estimate_training_memory",
    "MemoryEstimate",
    "GPU",
    "gpu",
    "usable_memory",
    "fits",
    "largest_batch",
    "recommended_ram",
    # tracing
    "trace",
    "Trace",
    "tracing",  # the module, callable as its function tracing() (see _CallableModule)
    "record",
    "reference_path",
    # advice
    "advise",  # the module, callable as its function advise()
    "Advice",
    "Candidate",
    # modules
    "claims",
    "tasks",
    "compress",
    "interpret",
    "lifelong",
    "biology",
    "neuromorphic",
    "hardware",
    "profiling",
    "validate",
]
