"""RLE decode/encode: hand-worked examples, round trips, the real SIIM strings, errors and variant detection."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cxrl.data.rle import ABSOLUTE, RELATIVE, decode_masks, decode_rle, detect_format, encode_rle
from cxrl.errors import DataError

# A 4 (rows) x 3 (columns) mask; pixels are numbered down each column: flat 0..3 column 0, 4..7 column 1, ...
MASK = np.array(
    [
        [1, 0, 0],
        [1, 0, 1],
        [0, 0, 1],
        [0, 1, 0],
    ],
    dtype=bool,
)
# runs at flat [0, 2), [7, 8), [9, 11)
RELATIVE_RLE = "0 2 5 1 1 2"
ABSOLUTE_RLE = "1 2 8 1 10 2"


def test_hand_worked_example_both_variants():
    assert encode_rle(MASK, relative=True) == RELATIVE_RLE
    assert encode_rle(MASK, relative=False) == ABSOLUTE_RLE
    np.testing.assert_array_equal(decode_rle(RELATIVE_RLE, 4, 3, relative=True), MASK)
    np.testing.assert_array_equal(decode_rle(ABSOLUTE_RLE, 4, 3, relative=False), MASK)


@pytest.mark.parametrize("relative", [True, False])
@pytest.mark.parametrize("shape", [(16, 16), (9, 23), (1, 5)])
def test_random_masks_round_trip(relative, shape):
    rng = np.random.default_rng(shape[0] * 31 + shape[1])
    for density in (0.0, 0.1, 0.5, 1.0):
        mask = rng.random(shape) < density
        rle = encode_rle(mask, relative=relative)
        decoded = decode_rle(rle, *shape, relative=relative)
        assert decoded.shape == shape and decoded.dtype == bool
        np.testing.assert_array_equal(decoded, mask)


def test_empty_mask_is_minus_one_and_decodes_empty():
    assert encode_rle(np.zeros((5, 5))) == "-1"
    for text in ("-1", " -1", ""):
        assert not decode_rle(text, 5, 5).any()


def test_decode_masks_ors_joined_strings():
    a = np.zeros((6, 6), bool)
    a[1:3, 1:3] = True
    b = np.zeros((6, 6), bool)
    b[2:5, 2:5] = True
    joined = f"{encode_rle(a)}|{encode_rle(b)}"
    np.testing.assert_array_equal(decode_masks(joined, 6, 6, RELATIVE), a | b)
    assert not decode_masks(None, 6, 6).any()
    with pytest.raises(DataError, match="mask format"):
        decode_masks(joined, 6, 6, "rle-ish")


@pytest.mark.parametrize(
    ("text", "message"),
    [("1 2 3", "pairs"), ("a b", "integers"), ("5000 10", "outside"), ("-3 2", "non-negative")],
)
def test_malformed_rle_is_a_clear_error(text, message):
    with pytest.raises(DataError, match=message):
        decode_rle(text, 10, 10)


def test_detect_format():
    rng = np.random.default_rng(0)
    masks = [rng.random((20, 20)) < 0.3 for _ in range(5)]
    assert detect_format([encode_rle(m, relative=True) for m in masks]) == RELATIVE
    assert detect_format([encode_rle(m, relative=False) for m in masks]) == ABSOLUTE
    assert detect_format(["-1", "5 3"], default=ABSOLUTE) == ABSOLUTE  # nothing decides: the default


def test_real_siim_strings_round_trip(txv_data):
    """The challenge's own relative RLEs decode to 1024x1024 masks whose area is the sum of run lengths and
    re-encode to the identical string."""
    table = pd.read_csv(txv_data / "siim-pneumothorax-train-rle.csv.gz", nrows=200)
    rles = [r.strip() for r in table.iloc[:, 1] if r.strip() != "-1"]
    assert len(rles) > 20
    assert detect_format(rles) == RELATIVE
    for rle in rles:
        mask = decode_rle(rle, 1024, 1024)
        assert mask.sum() == sum(int(n) for n in rle.split()[1::2])
        assert encode_rle(mask) == rle
        np.testing.assert_array_equal(decode_rle(encode_rle(mask, relative=False), 1024, 1024, relative=False), mask)
