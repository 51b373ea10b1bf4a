"""Dense targets in cache pixels (cxrl.data.dense): masks and boxes follow the letterbox of their image, the
phantom's truth reaches the records through the readers, SIIM's RLE and box-only records become masks."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from cxrl.data import rle
from cxrl.data.dense import Box, annotated, box_mask, dense_findings, mask_stack, record_boxes, record_mask
from cxrl.data.imageio import DecodedImage
from cxrl.data.prepare import GEOMETRY, to_cache_image


def _record(mask: np.ndarray, size: int, **extra) -> dict:
    """A record of a source image whose pixels are ``mask``, with the geometry ``cxrl prepare`` gives it."""
    image, geometry = to_cache_image(DecodedImage(mask.astype(np.float32), *mask.shape), size)
    return {**dict(zip(GEOMETRY, geometry, strict=True)), "image": image, **extra}


@pytest.mark.parametrize("shape", [(80, 50), (50, 80), (64, 64)])
def test_a_mask_lands_on_its_letterboxed_image(shape):
    mask = np.zeros(shape, bool)
    mask[10:30, 20:45] = True
    row = _record(mask, 40, masks=json.dumps({"Edema": rle.encode_rle(mask, relative=False)}),
                  mask_format=rle.ABSOLUTE)
    placed, drawn = record_mask(row, "Edema", 40), row["image"] >= 128
    assert placed.shape == (40, 40)
    assert (placed & drawn).sum() / (placed | drawn).sum() > 0.9  # the mask covers the pixels drawn from it
    assert not record_mask(row, "Pneumothorax", 40).any()  # annotated record, finding absent: empty


def test_boxes_follow_the_letterbox_and_fill_as_masks():
    mask = np.zeros((100, 50), bool)
    mask[20:60, 10:30] = True  # x 10..30, y 20..60 in source pixels
    row = _record(mask, 50, boxes=json.dumps([{"label": "Lung Opacity", "x": 10, "y": 20, "w": 20, "h": 40}]))
    (box,) = record_boxes(row)
    assert box == Box("Lung Opacity", 10 * 0.5 + 12, 10.0, 30 * 0.5 + 12, 30.0)  # scale 0.5, 12 px left pad
    filled, drawn = record_mask(row, "Lung Opacity", 50), row["image"] >= 128
    assert (filled & drawn).sum() / (filled | drawn).sum() > 0.9
    assert np.array_equal(filled, box_mask([box], 50))
    assert not record_mask(row, "Pneumothorax", 50).any()


def test_siim_rle_is_the_pneumothorax_mask_and_unannotated_records_have_none():
    mask = np.zeros((32, 32), bool)
    mask[5:9, 3:20] = True
    siim = _record(mask, 32, mask_rle=rle.encode_rle(mask) + "|-1", mask_format=rle.RELATIVE)
    assert np.array_equal(record_mask(siim, "Pneumothorax", 32), mask)
    assert record_mask(_record(mask, 32), "Pneumothorax", 32) is None


def test_the_phantom_truth_reaches_the_cache_records(tmp_path):
    from cxrl.data.cache import open_cache
    from cxrl.data.phantom import truth_mask, write_dataset
    from cxrl.data.prepare import prepare

    root = write_dataset(tmp_path / "ph", n=12, size=64, layout="mimic", seed=3, workers=1)
    prepare("mimic", root, tmp_path / "cache", size=32, workers=1)
    cache = open_cache(tmp_path / "cache")
    records = cache.records
    assert annotated(records).all()
    truth = pd.read_parquet(root / "phantom_truth" / "truth.parquet")
    drawn = {f for m in truth["masks"] for f in json.loads(m)}
    assert set(dense_findings(records)) == drawn | {b["label"] for x in truth["boxes"] for b in json.loads(x)}
    by_path = dict(zip(str(root) + "/" + truth["image"], truth.to_dict("records"), strict=True))
    finding = max(drawn, key=lambda f: sum(f in json.loads(m) for m in truth["masks"]))
    stack = mask_stack(records, np.arange(len(records)), [finding], 32)[:, 0]
    for i, path in enumerate(records["image_path"]):
        full = truth_mask(by_path[path], finding, 64)
        half = full.reshape(32, 2, 32, 2).mean((1, 3)) >= 0.5  # the truth at cache resolution
        assert (stack[i] ^ half).sum() <= 0.02 * 32 * 32
