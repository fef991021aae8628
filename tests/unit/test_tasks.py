"""memlib.tasks.counting: seeded batches and the bit-string codec."""

from __future__ import annotations

import pytest
import torch

from memlib.tasks import counting_batch, decode_bits, encode_bits


def test_batch_shapes_and_dtypes():
    batch = counting_batch(7, 3, 11)
    assert batch.bits.shape == (7, 11)  # (B, max_len)
    assert batch.lengths.shape == (7,)
    assert batch.counts.shape == (7,)
    assert batch.bits.dtype == torch.float32
    assert batch.lengths.dtype == torch.int64
    assert batch.counts.dtype == torch.float32


@pytest.mark.parametrize("min_len,max_len", [(1, 1), (3, 11), (5, 40)])
def test_lengths_padding_and_counts(min_len, max_len):
    batch = counting_batch(64, min_len, max_len, seed=1, step=2)
    assert batch.lengths.min() >= min_len and batch.lengths.max() <= max_len
    assert set(batch.bits.unique().tolist()) <= {0.0, 1.0}
    positions = torch.arange(max_len)
    padding = positions[None, :] >= batch.lengths[:, None]  # (B, max_len)
    assert (batch.bits[padding] == 0).all()
    torch.testing.assert_close(batch.counts, batch.bits.sum(dim=1))
    for b in range(64):
        assert batch.counts[b] == batch.bits[b, : batch.lengths[b]].sum()


def test_lengths_cover_the_range():
    batch = counting_batch(500, 2, 6)
    assert set(batch.lengths.tolist()) == {2, 3, 4, 5, 6}


def test_p_sets_the_share_of_ones():
    assert (counting_batch(16, 2, 9, p=0.0).counts == 0).all()
    ones = counting_batch(16, 2, 9, p=1.0)
    torch.testing.assert_close(ones.counts, ones.lengths.float())


def test_same_seed_and_step_same_batch():
    a = counting_batch(8, 2, 10, seed=4, step=9)
    b = counting_batch(8, 2, 10, seed=4, step=9)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)


@pytest.mark.parametrize("other", [dict(seed=4, step=10), dict(seed=5, step=9)])
def test_other_step_or_seed_other_batch(other):
    a = counting_batch(8, 2, 10, seed=4, step=9)
    b = counting_batch(8, 2, 10, **other)
    assert not torch.equal(a.bits, b.bits)


def test_batch_does_not_depend_on_global_rng():
    torch.manual_seed(1)
    a = counting_batch(8, 2, 10)
    torch.manual_seed(2)
    b = counting_batch(8, 2, 10)
    assert torch.equal(a.bits, b.bits)


def test_device_is_honoured(dev):
    batch = counting_batch(4, 2, 6, device=dev)
    assert {t.device.type for t in batch} == {dev.type}
    cpu = counting_batch(4, 2, 6)
    assert torch.equal(batch.bits.cpu(), cpu.bits)


@pytest.mark.parametrize(
    "kwargs,expected",
    [
        (dict(batch_size=0, min_len=1, max_len=5), "batch_size >= 1, got 0"),
        (dict(batch_size=2, min_len=0, max_len=5), "min_len=0, max_len=5"),
        (dict(batch_size=2, min_len=6, max_len=5), "min_len=6, max_len=5"),
        (dict(batch_size=2, min_len=1, max_len=5, p=-0.1), "p=-0.1"),
        (dict(batch_size=2, min_len=1, max_len=5, p=1.5), "p=1.5"),
    ],
)
def test_bad_arguments_name_their_values(kwargs, expected):
    with pytest.raises(ValueError, match=expected):
        counting_batch(**kwargs)


# encode_bits / decode_bits --------------------------------------------------------------------


def test_encode_bits_values():
    bits = encode_bits("0110")
    assert bits.dtype == torch.float32
    assert bits.tolist() == [0.0, 1.0, 1.0, 0.0]


@pytest.mark.parametrize("text", ["0", "1", "0110", "1" * 50])
def test_decode_encode_round_trip(text):
    assert decode_bits(encode_bits(text)) == text


def test_encode_decode_round_trip_on_a_batch_row():
    batch = counting_batch(1, 20, 20, seed=2)
    row = batch.bits[0]
    assert torch.equal(encode_bits(decode_bits(row)), row)


def test_spaces_are_ignored():
    assert torch.equal(encode_bits(" 01 10 "), encode_bits("0110"))


def test_encode_bits_on_a_device(dev):
    assert encode_bits("01", device=dev).device.type == dev.type


@pytest.mark.parametrize("text,bad", [("01a1", "'a'"), ("0x21", "'2x'"), ("1,0", "','")])
def test_bad_characters_are_named(text, bad):
    with pytest.raises(ValueError) as err:
        encode_bits(text)
    message = str(err.value)
    assert f"got {bad}" in message
    assert repr(text) in message


@pytest.mark.parametrize("text", ["", "   "])
def test_empty_input_is_rejected(text):
    with pytest.raises(ValueError, match="at least one bit"):
        encode_bits(text)


@pytest.mark.parametrize("value", [101, b"01", None, ["0", "1"]])
def test_non_string_is_a_type_error(value):
    with pytest.raises(TypeError, match=type(value).__name__):
        encode_bits(value)


def test_seed_and_step_pairs_do_not_collide():
    a = counting_batch(16, 5, 10, seed=0, step=1_000_003)
    b = counting_batch(16, 5, 10, seed=1, step=0)
    assert not torch.equal(a.bits, b.bits)
