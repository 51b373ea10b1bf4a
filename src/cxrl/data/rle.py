"""Run-length encoding of binary masks as in the SIIM-ACR Pneumothorax challenge (Kaggle 2019).

Pixels are numbered column by column (top to bottom, then left to right), so a flat run index ``k`` is row
``k % height``, column ``k // height``. Two variants exist:

- ``"siim-relative"`` (``train-rle.csv``, the challenge's ``mask_functions.py``): pairs ``(offset, length)``, the
  first offset 0-based from the first pixel, each later offset counted from the end of the previous run;
- ``"absolute"`` (``stage_2_train.csv``, Kaggle's standard RLE): pairs ``(start, length)`` with 1-based starts.

An empty mask is written ``"-1"``; ``"-1"`` and ``""`` decode to an empty mask.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from cxrl.errors import DataError

RELATIVE = "siim-relative"
ABSOLUTE = "absolute"
FORMATS: tuple[str, ...] = (RELATIVE, ABSOLUTE)
EMPTY = "-1"
SEPARATOR = "|"


def run_bounds(rle: str, relative: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """0-based flat ``(starts, ends)`` (end exclusive) of the runs of ``rle``."""
    text = rle.strip()
    if text in ("", EMPTY):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    try:
        numbers = np.array(text.split(), dtype=np.int64)
    except ValueError as err:
        raise DataError(f"RLE {text[:40]!r}...: not a list of integers") from err
    if numbers.size % 2 or (numbers < 0).any():
        raise DataError(f"RLE {text[:40]!r}...: expected non-negative (start, length) pairs, got {numbers.size} values")
    offsets, lengths = numbers[0::2], numbers[1::2]
    # relative: each offset counts from the end of the previous run; absolute: 1-based starts
    starts = np.cumsum(offsets) + np.concatenate(([0], np.cumsum(lengths)[:-1])) if relative else offsets - 1
    return starts, starts + lengths


def decode_rle(rle: str, height: int, width: int, relative: bool = True) -> np.ndarray:
    """The ``(height, width)`` boolean mask of one RLE string (see the module docstring for the variants)."""
    starts, ends = run_bounds(rle, relative)
    size = height * width
    if starts.size and (starts.min() < 0 or ends.max() > size):
        raise DataError(f"RLE runs reach pixel {int(ends.max())} (or below 0) outside a {height}x{width} mask")
    flat = np.zeros(size, bool)
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        flat[start:end] = True
    return np.ascontiguousarray(flat.reshape(width, height).T)


def encode_rle(mask: np.ndarray, relative: bool = True) -> str:
    """The RLE string of a 2-D mask (non-zero = inside); ``"-1"`` for an empty mask."""
    flat = np.asarray(mask, dtype=bool).T.ravel()
    edges = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0] if flat[0] else [], edges, [flat.size] if flat[-1] else [])).astype(np.int64)
    if bounds.size == 0:
        return EMPTY
    starts, ends = bounds[0::2], bounds[1::2]
    firsts = starts - np.concatenate(([0], ends[:-1])) if relative else starts + 1
    return " ".join(map(str, np.column_stack((firsts, ends - starts)).ravel()))


def decode_masks(joined: str | None, height: int, width: int, fmt: str = RELATIVE) -> np.ndarray:
    """OR of the masks in ``joined`` (RLE strings separated by ``|``, as in a record's ``mask_rle``)."""
    if fmt not in FORMATS:
        raise DataError(f"mask format {fmt!r}: expected one of {', '.join(FORMATS)}")
    mask = np.zeros((height, width), bool)
    for rle in (joined or "").split(SEPARATOR):
        mask |= decode_rle(rle, height, width, relative=fmt == RELATIVE)
    return mask


def detect_format(rles: Iterable[str], default: str = RELATIVE) -> str:
    """Guess the variant of a set of RLE strings: relative offsets go down somewhere, absolute starts never do.

    ``default`` is returned when nothing decides it (only empty or single-run strings).
    """
    seen_multi_run = False
    for rle in rles:
        numbers = np.array(rle.split(), dtype=np.int64) if rle.strip() not in ("", EMPTY) else np.zeros(0, np.int64)
        starts, lengths = numbers[0::2], numbers[1::2]
        if starts.size < 2:
            continue
        seen_multi_run = True
        if (starts[1:] < starts[:-1] + lengths[:-1]).any():
            return RELATIVE
    return ABSOLUTE if seen_multi_run else default
