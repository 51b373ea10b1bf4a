"""CXR-safe augmented views, batched on tensors and seeded per sample.

A view function maps a uint8 batch ``(B, H, W)`` and one int64 seed per sample to a list of normalized float
views ``(B, 1, s, s)``. Each sample's random parameters come from its own generator, seeded by its seed and the
view's index, so a sample's views do not depend on the batch it sits in, the worker or the process.

Geometry (random resized crop, rotation, translation, optional horizontal flip) is one affine matrix per sample,
applied with one sampling grid and one bilinear ``grid_sample`` per view; padding is black (air). There is never
a vertical flip (the apices are at the top) and horizontal flips are off by default (laterality: heart on the
patient's left). Intensity ops are brightness, contrast and gamma (no hue/saturation: radiographs are grey), a
per-sample Gaussian blur and additive Gaussian noise (the CovidPrognosis recipe that lightly's X-ray tutorial follows).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from cxrl import intensity
from cxrl.errors import ConfigError

ViewFn = Callable[[torch.Tensor, torch.Tensor], list[torch.Tensor]]

# Positions of each sample's uniform draws; a fixed layout keeps the parameters of one op independent of the others.
_AREA, _RATIO, _CX, _CY, _ANGLE, _TX, _TY, _FLIP, _JITTER, _BRIGHT, _CONTRAST, _GAMMA_ON, _GAMMA, _BLUR_ON, _SIGMA, \
    _NOISE_ON = range(16)
_N_DRAWS = 16


@dataclass
class ViewConfig:
    """One augmented view. Sizes in output pixels; intensities on the [0, 1] scale before normalization."""

    size: int = 224
    crop_scale: tuple[float, float] = (0.35, 1.0)  # fraction of the image area kept: most of the chest
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)  # width / height of the crop
    rotation_deg: float = 10.0  # uniform in [-r, r]
    translate: float = 0.05  # fraction of the image side, uniform in [-t, t] per axis
    hflip_p: float = 0.0  # off by default: laterality matters on a chest radiograph
    jitter_p: float = 0.8  # probability of brightness + contrast jitter
    brightness: float = 0.2  # factor uniform in [1 - b, 1 + b]
    contrast: float = 0.2  # factor uniform in [1 - c, 1 + c] around the image mean
    gamma_p: float = 0.5
    gamma: tuple[float, float] = (0.8, 1.25)  # log-uniform exponent
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)  # output pixels
    noise_p: float = 0.0
    noise_std: float = 0.02

    def __post_init__(self) -> None:
        for name in ("crop_scale", "crop_ratio", "gamma", "blur_sigma"):
            low, high = getattr(self, name)
            setattr(self, name, (float(low), float(high)))
            if not 0 < low <= high:
                raise ConfigError(f"ViewConfig.{name}: expected 0 < min <= max, found {getattr(self, name)}")
        if self.crop_scale[1] > 1:
            raise ConfigError(f"ViewConfig.crop_scale: expected values in (0, 1], found {self.crop_scale}")
        for name in ("hflip_p", "jitter_p", "gamma_p", "blur_p", "noise_p"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"ViewConfig.{name}: expected a probability in [0, 1], found {getattr(self, name)}")
        for name in ("rotation_deg", "translate", "brightness", "contrast", "noise_std"):
            if getattr(self, name) < 0:
                raise ConfigError(f"ViewConfig.{name}: expected >= 0, found {getattr(self, name)}")
        if self.size < 8:
            raise ConfigError(f"ViewConfig.size: expected at least 8 pixels, found {self.size}")


def simclr_views(size: int = 224) -> list[ViewConfig]:
    """Two symmetric views (SimCLR, Chen et al. 2020, adapted to CXR: no colour, no vertical flip)."""
    view = ViewConfig(size=size, brightness=0.4, contrast=0.4, blur_p=0.5, blur_sigma=_scaled_sigma(size), noise_p=0.2)
    return [view, ViewConfig(**vars(view))]


def moco_views(size: int = 224) -> list[ViewConfig]:
    """MoCo v2 (Chen et al. 2020) uses SimCLR's augmentations, blur included."""
    return simclr_views(size)


def byol_views(size: int = 224) -> list[ViewConfig]:
    """BYOL's asymmetric pair (Grill et al. 2020, Table 6): blur always on view 1, rarely on view 2.

    Solarization is not CXR-safe (it inverts bone and air); view 2 gets noise in its place.
    """
    common = dict(size=size, brightness=0.4, contrast=0.4, blur_sigma=_scaled_sigma(size))
    return [ViewConfig(**common, blur_p=1.0), ViewConfig(**common, blur_p=0.1, noise_p=0.2)]


def swav_views(size: int = 224, n_global: int = 2, n_local: int = 4, local_size: int = 96) -> list[ViewConfig]:
    """Multi-crop (SwAV, Caron et al. 2020): ``n_global`` large views, then ``n_local`` small ones.

    Local crops keep at least 15% of the image (the paper's 5% would often show no lung at all).
    """
    glob = ViewConfig(size=size, brightness=0.4, contrast=0.4, blur_p=0.5, blur_sigma=_scaled_sigma(size))
    local = ViewConfig(
        size=local_size, crop_scale=(0.15, 0.35), brightness=0.4, contrast=0.4, blur_p=0.5,
        blur_sigma=_scaled_sigma(local_size),
    )
    return [ViewConfig(**vars(glob)) for _ in range(n_global)] + [ViewConfig(**vars(local)) for _ in range(n_local)]


def convirt_views(size: int = 224) -> list[ViewConfig]:
    """ConVIRT's one image view (Zhang et al. 2022, section 4.1): crop of 60-100 % of the image, rotation up to
    20 degrees, translation up to 10 %, brightness and contrast 0.4, Gaussian blur. No horizontal flip: the report
    names the side."""
    return [ViewConfig(size=size, crop_scale=(0.6, 1.0), rotation_deg=20.0, translate=0.1, brightness=0.4,
                       contrast=0.4, blur_p=0.5, blur_sigma=_scaled_sigma(size))]


def sentence_view(ids: torch.Tensor, mask: torch.Tensor, sentences: torch.Tensor, prob: float,
                  chosen: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """ConVIRT's text transform ``t_u`` (Zhang et al. 2022, section 3.1): each report, with probability ``prob``,
    is cut to one uniformly drawn sentence, kept with its special tokens and moved to the front (positions as a
    prompt's). ``ids``, ``mask`` and ``sentences`` are ``(B, L)`` token ids, real-token mask and sentence numbers
    (:func:`cxrl.data.tokens.token_sentences`); reports without a sentence stay whole. ``chosen`` (B,) from
    :func:`choose_sentences` cuts to given sentences instead (0: whole), e.g. the same ones in two texts."""
    if chosen is None and prob <= 0:
        return ids, mask
    if chosen is None:
        chosen = choose_sentences(mask, sentences, prob)
    keep = mask.bool() & ((sentences.long() == chosen[:, None]) | (sentences == 0) | (chosen[:, None] == 0))
    order = torch.argsort((~keep).to(torch.uint8), dim=1, stable=True)
    return ids.gather(1, order), keep.gather(1, order)


def choose_sentences(mask: torch.Tensor, sentences: torch.Tensor, prob: float) -> torch.Tensor:
    """Per report, with probability ``prob``, a uniformly drawn sentence number (1-based); else 0 (whole report)."""
    count = torch.where(mask.bool(), sentences.long(), 0).amax(1)
    if prob <= 0:
        return torch.zeros_like(count)
    cut = (torch.rand(count.shape, device=mask.device) < prob) & (count > 0)
    chosen = (torch.rand(count.shape, device=mask.device) * count).long() + 1
    return torch.where(cut, chosen, 0)


def eval_view(size: int = 224) -> ViewConfig:
    """The deterministic evaluation view: the whole image resized to ``size``."""
    return ViewConfig(
        size=size, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), rotation_deg=0.0, translate=0.0, jitter_p=0.0,
        gamma_p=0.0,
    )


def _scaled_sigma(size: int) -> tuple[float, float]:
    """SimCLR's blur sigma range (0.1, 2.0) at 224 px, scaled to ``size``."""
    return (0.1 * size / 224, 2.0 * size / 224)


def seeds_for(indices: Sequence[int] | np.ndarray | torch.Tensor, epoch: int, base_seed: int = 0) -> torch.Tensor:
    """One int64 seed per (dataset index, epoch, base seed), via a SplitMix64 mix: fixed across runs and workers."""
    idx = np.asarray(indices.cpu() if isinstance(indices, torch.Tensor) else indices, dtype=np.int64)
    key = _mix64(np.uint64(base_seed % 2**64) ^ _mix64(np.uint64(epoch % 2**64)))
    return torch.from_numpy(_mix64(idx.astype(np.uint64) ^ key).view(np.int64).copy())


def _mix64(x: np.ndarray | np.uint64) -> np.ndarray:
    """SplitMix64 finalizer (Steele et al. 2014) on uint64: a bijection with good avalanche."""
    with np.errstate(over="ignore"):
        x = np.asarray(x, dtype=np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def make_view_fn(cfgs: Sequence[ViewConfig]) -> ViewFn:
    """A function ``(images uint8 (B, H, W), seeds int64 (B,)) -> [view (B, 1, s, s) float normalized]``.

    View ``v`` of sample ``i`` depends only on ``images[i]``, ``seeds[i]``, ``v`` and ``cfgs[v]``. Runs on the
    images' device, in float32 whatever autocast region it is called from (Lightning's mixed precision wraps the
    training step in one).
    """
    cfgs = list(cfgs)
    if not cfgs:
        raise ConfigError("make_view_fn: expected at least one ViewConfig")

    def views(images: torch.Tensor, seeds: torch.Tensor) -> list[torch.Tensor]:
        x = _as_unit_batch(images)
        if seeds.shape != (x.shape[0],):
            raise ValueError(f"make_view_fn: expected {x.shape[0]} seeds, found shape {tuple(seeds.shape)}")
        view_seeds = [_view_seeds(seeds, v) for v in range(len(cfgs))]
        limits = [_prefilter_limit(cfg) for cfg in cfgs]
        with torch.autocast(x.device.type, enabled=False):
            inputs = {limit: _prefilter(x, limit) for limit in set(limits)}  # once per distinct size limit
            return [_one_view(inputs[limit], s, cfg) for limit, s, cfg in zip(limits, view_seeds, cfgs, strict=True)]

    return views


def _as_unit_batch(images: torch.Tensor) -> torch.Tensor:
    if images.dtype != torch.uint8 or images.dim() not in (3, 4) or images.dim() == 4 and images.shape[1] != 1:
        raise ValueError(
            f"views: expected uint8 images (B, H, W) or (B, 1, H, W), found {images.dtype} {tuple(images.shape)}"
        )
    x = images if images.dim() == 4 else images.unsqueeze(1)
    return x.float() * (1 / 255)


def _view_seeds(seeds: torch.Tensor, view: int) -> np.ndarray:
    """(B,) uint64: each sample's seed mixed with the view index."""
    return _mix64(seeds.cpu().numpy().astype(np.int64).view(np.uint64) ^ _mix64(np.uint64(view + 1)))


def _one_view(x: torch.Tensor, seeds: np.ndarray, cfg: ViewConfig) -> torch.Tensor:
    """One view of the (prefiltered) unit batch ``x``.

    The draws are made on the CPU, where the blur and noise choices are read without a device sync, and copied to
    the device once.
    """
    draws = _uniform_draws(seeds)
    u = _to_device(draws, x.device)
    out = _resample(x, _affine_matrices(u, cfg, x.shape[-2:]), cfg.size)
    out = _jitter(out, u, cfg)
    out = _blur(out, u, _chosen(draws, _BLUR_ON, cfg.blur_p), cfg)
    out = _noise(out, seeds, _chosen(draws, _NOISE_ON, cfg.noise_p), cfg)
    return out.clamp_(0, 1).sub_(intensity.MEAN).div_(intensity.STD)


def _to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A small CPU tensor on ``device`` without a host sync: a GPU copies from pinned memory asynchronously (from
    pageable memory the copy waits for the stream)."""
    if device.type != "cuda":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


def _chosen(draws: torch.Tensor, column: int, p: float) -> torch.Tensor:
    """CPU indices of the samples whose draw in ``column`` turns an op of probability ``p`` on."""
    return (draws[:, column] < p).nonzero().flatten()


def _uniform_draws(seeds: np.ndarray) -> torch.Tensor:
    """(B, _N_DRAWS) float32 uniforms in [0, 1): row ``i`` is the SplitMix64 stream seeded with ``seeds[i]``.

    Output ``j`` of the stream is ``mix(seed + j * golden)``, vectorized over samples; the top 24 bits make an exact
    float32 in [0, 1).
    """
    steps = np.arange(_N_DRAWS, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    with np.errstate(over="ignore"):
        bits = _mix64(seeds.astype(np.uint64)[:, None] + steps[None, :])
    return torch.from_numpy((bits >> np.uint64(40)).astype(np.float32) * np.float32(2**-24))


def _between(u: torch.Tensor, low: float, high: float) -> torch.Tensor:
    return low + (high - low) * u


def _affine_matrices(u: torch.Tensor, cfg: ViewConfig, in_hw: torch.Size) -> torch.Tensor:
    """(B, 2, 3) maps from output to input normalized coordinates: crop ∘ translate ∘ rotate ∘ flip.

    The crop keeps an area fraction drawn from ``crop_scale`` with a log-uniform aspect ratio, clamped so that the
    crop fits inside the image (so the kept area is exactly the drawn fraction).
    """
    h, w = in_hw
    area = _between(u[:, _AREA], *cfg.crop_scale)
    log_ratio = _between(u[:, _RATIO], math.log(cfg.crop_ratio[0]), math.log(cfg.crop_ratio[1]))
    # Aspect in normalized units (fraction of width / fraction of height); both fractions <= 1 iff |log| <= -log area.
    log_norm_ratio = (log_ratio + math.log(h / w)).clamp(min=area.log(), max=-area.log())
    frac_w = (area * log_norm_ratio.exp()).sqrt()
    frac_h = (area / log_norm_ratio.exp()).sqrt()
    center_x = _between(u[:, _CX], -1, 1) * (1 - frac_w) + _between(u[:, _TX], -2, 2) * cfg.translate
    center_y = _between(u[:, _CY], -1, 1) * (1 - frac_h) + _between(u[:, _TY], -2, 2) * cfg.translate
    angle = torch.deg2rad(_between(u[:, _ANGLE], -cfg.rotation_deg, cfg.rotation_deg))
    flip = torch.where(u[:, _FLIP] < cfg.hflip_p, -1.0, 1.0)
    cos, sin = angle.cos(), angle.sin()
    theta = torch.stack(
        [
            torch.stack([frac_w * cos * flip, -frac_w * sin, center_x], dim=1),
            torch.stack([frac_h * sin * flip, frac_h * cos, center_y], dim=1),
        ],
        dim=1,
    )
    return theta


def _prefilter_limit(cfg: ViewConfig) -> int:
    """The largest input side a view needs (inputs beyond it are downscaled first, see :func:`_prefilter`).

    The smallest crop spans about ``sqrt(min area)`` of the image side; keep it at >= 2 output pixels per pixel.
    """
    return math.ceil(2 * cfg.size / math.sqrt(cfg.crop_scale[0]))


def _prefilter(x: torch.Tensor, limit: int) -> torch.Tensor:
    """Antialiased downscale of inputs whose short side exceeds ``limit``, so bilinear sampling does not alias."""
    h, w = x.shape[-2:]
    if min(h, w) <= limit:
        return x
    scale = limit / min(h, w)
    return F.interpolate(x, size=(round(h * scale), round(w * scale)), mode="bilinear", antialias=True)


def _resample(x: torch.Tensor, theta: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear sampling of ``x`` on the affine grid ``theta`` (what ``F.affine_grid`` builds, by broadcasting).

    Output pixel centres sit at ``(2 i + 1) / size - 1`` (``align_corners=False``); padding is black.
    """
    centres = torch.arange(size, device=x.device, dtype=torch.float32).mul_(2 / size).add_(1 / size - 1)
    cols, rows = centres.view(1, 1, size), centres.view(1, size, 1)
    grid = torch.empty(x.shape[0], size, size, 2, device=x.device)
    for axis in range(2):
        a, b, c = (theta[:, axis, j].view(-1, 1, 1) for j in range(3))
        grid[..., axis] = a * cols + b * rows + c
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _per_sample(values: torch.Tensor) -> torch.Tensor:
    return values.float().view(-1, 1, 1, 1)


def _jitter(x: torch.Tensor, u: torch.Tensor, cfg: ViewConfig) -> torch.Tensor:
    """Brightness (multiplicative), contrast (around the image mean) and gamma, in place on a fresh batch."""
    on = _per_sample(u[:, _JITTER] < cfg.jitter_p)
    bright = 1 + on * _per_sample(_between(u[:, _BRIGHT], -cfg.brightness, cfg.brightness))
    contrast = 1 + on * _per_sample(_between(u[:, _CONTRAST], -cfg.contrast, cfg.contrast))
    x.mul_(bright).clamp_(0, 1)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x.sub_(mean).mul_(contrast).add_(mean).clamp_(0, 1)
    if cfg.gamma_p > 0:
        log_gamma = _between(u[:, _GAMMA], math.log(cfg.gamma[0]), math.log(cfg.gamma[1]))
        x.pow_((_per_sample(u[:, _GAMMA_ON] < cfg.gamma_p) * _per_sample(log_gamma)).exp())
    return x


def _blur(x: torch.Tensor, u: torch.Tensor, chosen: torch.Tensor, cfg: ViewConfig) -> torch.Tensor:
    """Separable Gaussian blur with a per-sample sigma on the ``chosen`` samples (CPU indices): ``K X K^T``.

    ``K`` is each sample's banded (size, size) blur matrix with reflected borders. On CPU this measured twice as
    fast as grouped convolutions with per-sample kernels; on a GPU it is two batched matmuls.
    """
    if len(chosen) == 0:
        return x
    chosen = _to_device(chosen, x.device)
    size = x.shape[-1]
    radius = min(math.ceil(3 * cfg.blur_sigma[1]), size - 1)
    sigma = _between(u[:, _SIGMA], *cfg.blur_sigma)[chosen]
    offsets = torch.arange(-radius, radius + 1, device=x.device)
    taps = torch.exp(-0.5 * (offsets / sigma[:, None]) ** 2)
    taps = taps / taps.sum(dim=1, keepdim=True)
    source = torch.arange(size, device=x.device)[:, None] + offsets
    source = torch.where(source < 0, -source, torch.where(source >= size, 2 * (size - 1) - source, source))
    shape = (len(chosen), size, len(offsets))
    kernel = torch.zeros(len(chosen), size, size, device=x.device)
    kernel.scatter_add_(2, source.expand(shape), taps[:, None, :].expand(shape))
    blurred = kernel @ x[chosen, 0] @ kernel.transpose(1, 2)
    return x.index_copy_(0, chosen, blurred.unsqueeze(1))


def _noise(x: torch.Tensor, seeds: np.ndarray, chosen: torch.Tensor, cfg: ViewConfig) -> torch.Tensor:
    """Additive Gaussian noise on the ``chosen`` samples (CPU indices), each from its own generator on x's device."""
    for i in chosen.tolist():
        gen = torch.Generator(device=x.device).manual_seed(int(_mix64(seeds[i] ^ np.uint64(0xD1B54A32D192ED03))))
        x[i].add_(torch.randn(x.shape[1:], generator=gen, device=x.device), alpha=cfg.noise_std)
    return x
