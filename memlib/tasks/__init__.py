"""Seeded, batched, device-aware tasks. Each batch is a function of (seed, step), so runs repeat."""

from memlib.tasks.counting import CountingBatch, counting_batch, decode_bits, encode_bits
from memlib.tasks.sequences import (
    TEMPORAL_ORDER_SYMBOLS,
    AddingBatch,
    CopyBatch,
    TemporalOrderBatch,
    adding_batch,
    copy_batch,
    temporal_order_batch,
)

__all__ = [
    "TEMPORAL_ORDER_SYMBOLS",
    "AddingBatch",
    "CopyBatch",
    "CountingBatch",
    "TemporalOrderBatch",
    "adding_batch",
    "copy_batch",
    "counting_batch",
    "decode_bits",
    "encode_bits",
    "temporal_order_batch",
]
