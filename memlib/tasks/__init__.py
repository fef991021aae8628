"""Seeded, batched, device-aware tasks. Each batch is a function of (seed, step), so runs repeat."""

from memlib.tasks.algorithmic import (
    AssociativeRecallBatch,
    PrioritySortBatch,
    RepeatCopyBatch,
    associative_recall_batch,
    priority_sort_batch,
    repeat_copy_batch,
)
from memlib.tasks.counting import CountingBatch, counting_batch, decode_bits, encode_bits
from memlib.tasks.episodes import (
    ClassSplit,
    EpisodeBatch,
    ImageClasses,
    accuracy_by_instance,
    digit_class_split,
    episode_batch,
    rotate_classes,
    rotated_digits,
)
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
    "AssociativeRecallBatch",
    "ClassSplit",
    "CopyBatch",
    "CountingBatch",
    "EpisodeBatch",
    "ImageClasses",
    "PrioritySortBatch",
    "RepeatCopyBatch",
    "TemporalOrderBatch",
    "accuracy_by_instance",
    "adding_batch",
    "associative_recall_batch",
    "copy_batch",
    "counting_batch",
    "decode_bits",
    "digit_class_split",
    "encode_bits",
    "episode_batch",
    "priority_sort_batch",
    "repeat_copy_batch",
    "rotate_classes",
    "rotated_digits",
    "temporal_order_batch",
]
