"""The phantom looks like a radiograph by simple statistics (issue 11), measured against the real RG1 chest film."""

import numpy as np
import pytest

from cxrl.data.imageio import decode_image
from cxrl.data.phantom import plan_dataset, render
from cxrl.data.phantom.acquisition import Acquisition
from cxrl.data.phantom.realism import STATS, statistics
from cxrl.data.phantom.render import mask_bit
from cxrl.data.prepare import to_cache_image


@pytest.fixture(scope="module")
def figures(rg1_dicom):
    real = statistics(to_cache_image(decode_image(rg1_dicom, reduce_to=256), 256)[0])
    phantom = np.stack([statistics(render(s, 256, seed=2).image) for s in plan_dataset(24, seed=2)])
    return dict(zip(STATS, real, strict=True)), dict(zip(STATS, phantom.mean(0), strict=True))


def test_no_clipped_white_and_bright_end_like_the_real_film(figures):
    real, phantom = figures
    assert phantom["white>=253 %"] <= 0.5
    assert abs(phantom["p95"] - real["p95"]) <= 0.10


def test_noise_within_twice_the_real_film(figures):
    real, phantom = figures
    assert real["noise |lap| median"] / 2 <= phantom["noise |lap| median"] <= 2 * real["noise |lap| median"]


def test_left_right_symmetry_like_positioned_films(figures):
    assert figures[1]["symmetry"] > 0.6


def test_films_are_landscape_or_portrait_and_masks_stay_inside():
    shapes = set()
    for spec in plan_dataset(40, seed=5):
        result = render(spec, 64, seed=5)
        rows, cols = result.image.any(axis=1), result.image.any(axis=0)
        shapes.add("portrait" if not cols.all() else "landscape" if not rows.all() else "square")
        for bit in range(16):
            region = mask_bit(result.mask, bit)
            assert not region[~rows].any() and not region[:, ~cols].any()
    assert shapes == {"portrait", "landscape", "square"}


def test_marker_varies_and_is_sometimes_absent():
    rng = np.random.default_rng(0)
    markers = [Acquisition.sample(rng, "AP", supine=True).marker for _ in range(300)]
    drawn = [m for m in markers if m is not None]
    assert 0.05 < 1 - len(drawn) / len(markers) < 0.3
    assert len({m.font for m in drawn}) > 2 and len({round(m.corner[0], 1) for m in drawn}) > 2
    assert {m.note for m in drawn} >= {"", "AP", "PORTABLE", "SUPINE"}
    assert max(m.value for m in drawn) < 253 / 255
