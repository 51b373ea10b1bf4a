"""Views: shapes, per-sample seeding, batch independence, CXR-safe geometry and intensity ranges."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from cxrl import intensity
from cxrl.config import load_config
from cxrl.errors import ConfigError
from cxrl.transforms import (
    ViewConfig,
    _affine_matrices,
    _uniform_draws,
    byol_views,
    eval_view,
    make_view_fn,
    moco_views,
    seeds_for,
    simclr_views,
    swav_views,
)

DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]
LOW, HIGH = (0 - intensity.MEAN) / intensity.STD, (1 - intensity.MEAN) / intensity.STD


def random_images(n: int = 6, size: int = 48, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, size, size), dtype=torch.uint8, generator=gen)


def ramp(size: int = 48, axis: int = 0) -> torch.Tensor:
    """Bright at the top (axis 0) or on the left (axis 1), dark at the other end."""
    line = torch.linspace(255, 0, size)
    img = line[:, None].expand(size, size) if axis == 0 else line[None, :].expand(size, size)
    return img.round().to(torch.uint8)


@pytest.mark.parametrize(
    ("cfgs", "sizes"),
    [
        (simclr_views(32), [32, 32]),
        (moco_views(32), [32, 32]),
        (byol_views(32), [32, 32]),
        (swav_views(32, n_global=2, n_local=3, local_size=16), [32, 32, 16, 16, 16]),
        ([eval_view(40)], [40]),
    ],
)
def test_presets_give_one_normalized_float_view_per_config(cfgs, sizes):
    views = make_view_fn(cfgs)(random_images(), seeds_for(range(6), epoch=0))
    assert [tuple(v.shape) for v in views] == [(6, 1, s, s) for s in sizes]
    for v in views:
        assert v.dtype == torch.float32
        assert v.min() >= LOW - 1e-5 and v.max() <= HIGH + 1e-5


def test_same_seeds_same_views_and_other_seeds_other_views():
    fn = make_view_fn(simclr_views(32))
    images, seeds = random_images(), seeds_for(range(6), epoch=0)
    first, again = fn(images, seeds), fn(images, seeds.clone())
    other = fn(images, seeds_for(range(6), epoch=1))
    for a, b, c in zip(first, again, other, strict=True):
        assert torch.equal(a, b)
        assert all(not torch.equal(a[i], c[i]) for i in range(6))
    assert not torch.equal(first[0], first[1]), "the two views of a sample must differ"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("cfgs", [simclr_views(32), byol_views(32), swav_views(32, n_local=2, local_size=16)])
def test_a_sample_view_does_not_depend_on_its_batch(cfgs, device):
    fn = make_view_fn(cfgs)
    images, seeds = random_images(8).to(device), seeds_for(range(8), epoch=3, base_seed=7).to(device)
    full = fn(images, seeds)
    pick = torch.tensor([5, 1, 6], device=device)
    part = fn(images[pick], seeds[pick])
    for whole, sub in zip(full, part, strict=True):
        assert whole.device.type == device
        torch.testing.assert_close(whole[pick], sub, rtol=0, atol=1e-6)


def test_never_flips_vertically_and_flips_horizontally_only_when_asked():
    strong = dataclasses.replace(simclr_views(48)[0], rotation_deg=10.0, crop_scale=(0.35, 1.0), noise_p=1.0)
    top_bright = ramp(axis=0).expand(16, -1, -1)
    seeds = seeds_for(range(16), epoch=0)
    (view,) = make_view_fn([strong])(top_bright, seeds)
    assert (view[:, 0, :12].mean(dim=(1, 2)) > view[:, 0, -12:].mean(dim=(1, 2))).all()

    left_bright = ramp(axis=1).expand(16, -1, -1)
    for p, left_wins in ((0.0, True), (1.0, False)):
        (view,) = make_view_fn([dataclasses.replace(strong, hflip_p=p)])(left_bright, seeds)
        left, right = view[:, 0, :, :12].mean(dim=(1, 2)), view[:, 0, :, -12:].mean(dim=(1, 2))
        assert ((left > right) == left_wins).all()


def test_crop_keeps_an_area_fraction_within_crop_scale_and_stays_inside_the_image():
    cfg = ViewConfig(size=32, crop_scale=(0.35, 0.9), crop_ratio=(0.5, 2.0), rotation_deg=0.0, translate=0.0)
    seeds = seeds_for(range(200), epoch=0)
    theta = _affine_matrices(_uniform_draws(seeds.numpy()), cfg, torch.Size([64, 48]))
    area = theta[:, :, :2].det().abs()
    assert area.min() >= 0.35 - 1e-5 and area.max() <= 0.9 + 1e-5
    assert area.max() - area.min() > 0.3, "areas should spread over the range"
    reach = theta[:, :, 2].abs() + theta[:, :, :2].abs().sum(dim=2)
    assert reach.max() <= 1 + 1e-5, "a crop without rotation/translation must not leave the image"

    white = torch.full((8, 40, 56), 255, dtype=torch.uint8)
    plain = dataclasses.replace(cfg, jitter_p=0.0, gamma_p=0.0)
    (view,) = make_view_fn([plain])(white, seeds[:8])
    torch.testing.assert_close(view, torch.full_like(view, HIGH))


def test_eval_view_at_the_input_size_is_the_canonical_model_input():
    images = random_images(4, size=32)
    (view,) = make_view_fn([eval_view(32)])(images, seeds_for(range(4), epoch=0))
    torch.testing.assert_close(view, intensity.to_model_input(images), rtol=0, atol=1e-5)


def test_blur_smooths_and_noise_adds_the_configured_std_with_geometry_unchanged():
    checker = ((torch.arange(32)[:, None] + torch.arange(32)[None, :]) % 2 * 255).to(torch.uint8).expand(8, -1, -1)
    base = eval_view(32)
    seeds = seeds_for(range(8), epoch=0)
    sharp, blurred = make_view_fn([base, dataclasses.replace(base, blur_p=1.0, blur_sigma=(1.0, 2.0))])(checker, seeds)
    assert (blurred.std(dim=(1, 2, 3)) < 0.5 * sharp.std(dim=(1, 2, 3))).all()

    grey = torch.full((8, 32, 32), 128, dtype=torch.uint8)
    plain, noisy = make_view_fn([base, dataclasses.replace(base, noise_p=1.0, noise_std=0.05)])(grey, seeds)
    diff = (noisy - plain) * intensity.STD
    assert diff.std() == pytest.approx(0.05, rel=0.1)
    assert abs(diff.mean()) < 0.01


def test_blur_is_a_normalized_separable_gaussian_of_the_drawn_sigma():
    point = torch.zeros(1, 33, 33, dtype=torch.uint8)
    point[0, 16, 16] = 255
    cfg = dataclasses.replace(eval_view(33), blur_p=1.0, blur_sigma=(1.5, 1.5))
    (view,) = make_view_fn([cfg])(point, seeds_for([0], epoch=0))
    response = view[0, 0] * intensity.STD + intensity.MEAN
    offsets = torch.arange(-16, 17.0)
    profile = torch.exp(-0.5 * (offsets / 1.5) ** 2) * (offsets.abs() <= 5)  # truncated at ceil(3 sigma)
    profile = profile / profile.sum()
    torch.testing.assert_close(response, torch.outer(profile, profile), rtol=1e-4, atol=1e-6)


def test_large_inputs_are_downscaled_without_aliasing():
    fine_checker = ((torch.arange(256)[:, None] + torch.arange(256)[None, :]) % 2 * 255).to(torch.uint8)
    (view,) = make_view_fn([eval_view(16)])(fine_checker.expand(2, -1, -1), seeds_for(range(2), epoch=0))
    level = view * intensity.STD + intensity.MEAN
    assert level.std() < 0.02 and abs(level.mean() - 0.5) < 0.02, "a 1-pixel checker must average to grey"


def test_jitter_changes_intensity_within_bounds():
    grey = torch.full((32, 16, 16), 128, dtype=torch.uint8)
    cfg = dataclasses.replace(eval_view(16), jitter_p=1.0, brightness=0.2, contrast=0.0)
    (view,) = make_view_fn([cfg])(grey, seeds_for(range(32), epoch=0))
    level = view.mean(dim=(1, 2, 3)) * intensity.STD + intensity.MEAN
    assert level.min() >= 128 / 255 * 0.8 - 1e-4 and level.max() <= 128 / 255 * 1.2 + 1e-4
    assert level.max() - level.min() > 0.1


def test_per_sample_draws_are_uniform_and_uncorrelated():
    draws = _uniform_draws(seeds_for(range(4000), epoch=0).numpy()).double()
    assert draws.min() >= 0 and draws.max() < 1
    torch.testing.assert_close(draws.mean(dim=0), torch.full((draws.shape[1],), 0.5, dtype=torch.double), atol=0.02,
                               rtol=0)
    correlation = torch.corrcoef(draws.T) - torch.eye(draws.shape[1], dtype=torch.double)
    assert correlation.abs().max() < 0.06


def test_seeds_for_is_a_fixed_distinct_int64_per_index_epoch_and_base_seed():
    a = seeds_for(torch.arange(1000), epoch=2, base_seed=5)
    assert a.dtype == torch.int64 and a.shape == (1000,)
    assert torch.equal(a, seeds_for(list(range(1000)), epoch=2, base_seed=5))
    assert len(set(a.tolist())) == 1000
    for other in (seeds_for(range(1000), epoch=3, base_seed=5), seeds_for(range(1000), epoch=2, base_seed=6)):
        assert not (a == other).any()


@pytest.mark.parametrize(
    "bad",
    [dict(crop_scale=(0.8, 0.2)), dict(crop_scale=(0.5, 1.5)), dict(hflip_p=1.5), dict(rotation_deg=-1), dict(size=4)],
)
def test_view_config_rejects_bad_values(bad):
    with pytest.raises(ConfigError):
        ViewConfig(**bad)


def test_view_config_loads_from_yaml_style_overrides():
    cfg = load_config(ViewConfig, overrides=["size=64", "crop_scale=[0.5, 1.0]", "hflip_p=0.5"])
    assert cfg.size == 64 and cfg.crop_scale == (0.5, 1.0) and cfg.hflip_p == 0.5
    with pytest.raises(ConfigError, match="crop_scale"):
        load_config(ViewConfig, overrides=["crop_scale=[0.9, 0.1]"])


def test_bad_images_or_seeds_raise_clear_errors():
    fn = make_view_fn([eval_view(16)])
    with pytest.raises(ValueError, match="uint8"):
        fn(torch.zeros(2, 16, 16), seeds_for(range(2), epoch=0))
    with pytest.raises(ValueError, match="seeds"):
        fn(torch.zeros(2, 16, 16, dtype=torch.uint8), seeds_for(range(3), epoch=0))
