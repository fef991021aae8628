"""External memory: addressing shared by NTM, DNC and MANN; the memory-augmented models; Hopfield networks.

One file per paper component (DESIGN.md section 2). Every model takes and returns explicit state
(its memory included) and records its read/write weightings and memory under ``memlib.trace()``.
The DNC's and MANN's own equations (both define ``update_usage``) stay in their modules.
"""

from memlib.memory.addressing import (
    Addressing,
    address,
    content_weighting,
    cosine_similarity,
    interpolate,
    read,
    sharpen,
    shift,
    write,
)
from memlib.memory.dmn import DMN, AttentionGRUCell, DMNConfig
from memlib.memory.dnc import DNC, DNCState
from memlib.memory.fast import fast_steps
from memlib.memory.hopfield import (
    HopfieldLayer,
    Recall,
    async_update,
    energy,
    hebbian_weights,
    modern_attention,
    modern_energy,
    modern_retrieve,
    modern_update,
    recall,
    sync_update,
)
from memlib.memory.mann import MANN, MANNState
from memlib.memory.memnet import MemN2N, MemN2NConfig, position_encoding
from memlib.memory.nsm import NSM, NSMCell, NSMConfig, NSMState
from memlib.memory.ntm import NTM, NTMState
from memlib.memory.slots import SlotMemory, SlotMemoryCell, SlotState

__all__ = [
    "DMN",
    "DNC",
    "MANN",
    "NSM",
    "NTM",
    "Addressing",
    "AttentionGRUCell",
    "DMNConfig",
    "DNCState",
    "HopfieldLayer",
    "MANNState",
    "MemN2N",
    "MemN2NConfig",
    "NSMCell",
    "NSMConfig",
    "NSMState",
    "NTMState",
    "Recall",
    "SlotMemory",
    "SlotMemoryCell",
    "SlotState",
    "address",
    "async_update",
    "content_weighting",
    "cosine_similarity",
    "energy",
    "fast_steps",
    "hebbian_weights",
    "interpolate",
    "modern_attention",
    "modern_energy",
    "modern_retrieve",
    "modern_update",
    "position_encoding",
    "read",
    "recall",
    "sharpen",
    "shift",
    "sync_update",
    "write",
]
