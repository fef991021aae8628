"""Seeded, batched, device-aware tasks. Each batch is a function of (seed, step), so runs repeat."""

from memlib.tasks.counting import CountingBatch, counting_batch, decode_bits, encode_bits

__all__ = ["CountingBatch", "counting_batch", "decode_bits", "encode_bits"]
