"""The ``cxrl explain`` driver: for each encoder (and an optional baseline, e.g. ``random``), a classifier of the
findings, its class activation maps on the test images positive for each finding, their localization against the
findings' masks, and pictures of the embedding space; written as PNGs, ``metrics.json`` and ``index.html``.

Rows and labels are settled as ``cxrl evaluate`` settles them (:func:`cxrl.evaluate.protocol.prepare_data`:
leakage check, selection split, label policy): the linear probe is fitted on the train rows with ``C`` chosen on
the selection rows; maps, prototypes and CAMs use the test rows. The findings explained default to those the cache
outlines (a mask or boxes, :mod:`cxrl.data.dense`) with ``min_positives`` positives and negatives in the train rows
and positives in the test rows; a finding without masks in its positive test rows gets CAMs but no localization
numbers, and says so. The same images (at most ``n_images`` per finding, drawn with ``seed``) are explained for
every encoder.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from tqdm.auto import tqdm

from cxrl import __version__
from cxrl.config import build, to_dict
from cxrl.data.cache import Cache, open_cache
from cxrl.data.dense import dense_findings, outlined_masks
from cxrl.data.labels import PATHOLOGIES
from cxrl.errors import ConfigError, DataError
from cxrl.evaluate.features import cached_features
from cxrl.evaluate.probe import fit_linear_probe, resolve_device
from cxrl.evaluate.protocol import EvalConfig, EvalData, prepare_data, resolve_encoder
from cxrl.evaluate.report import json_safe
from cxrl.evaluate.zeroshot import DEFAULT_PROMPTS, class_embeddings
from cxrl.explain import maps, pointing
from cxrl.explain.classifier import ProbeClassifier
from cxrl.explain.gallery import write_gallery
from cxrl.explain.gradcam import CAM_METHODS, class_activation_maps, spatial_encoder, target_layer
from cxrl.explain.overlay import write_overlay
from cxrl.explain.saliency import METHODS as SALIENCY_METHODS
from cxrl.explain.saliency import SaliencySettings, TextSimilarity, saliency_dice
from cxrl.methods.label_text import FINDING_SIMILARITY

log = logging.getLogger(__name__)
SCHEMA_VERSION = 1
HEADS = ("probe", "zeroshot")
MAP_METHODS = ("umap", "tsne")
LOCALIZATION_KEYS = ("pointing_game", "pointing_game_random", "pointing_game_margin", "iou", "iou_random",
                     "iou_margin")


@dataclass
class ExplainConfig:
    """Everything that defines an explanation (saved as ``metrics.json["settings"]``)."""

    findings: list[str] | None = None  # default: the findings the cache outlines, with enough positives
    n_images: int = 50  # test images explained per finding (all when fewer qualify)
    gallery_images: int = 8  # of those, shown in index.html per finding and encoder
    cam: str = "gradcam"  # a key of cxrl.explain.gradcam.CAM_METHODS
    head: str = "probe"  # probe | zeroshot (image-text encoders; others keep the probe)
    tolerance: int = 0  # pointing game: pixels the mask is grown by
    top_fraction: float = pointing.TOP_FRACTION  # IoU: share of the map's highest pixels
    saliency: str = "gradcam"  # image-text encoders: zero-shot saliency segmentation by gradcam | gscorecam | none
    sam_checkpoint: str | None = None  # a SAM (vit_b) weights file: refine the saliency pseudo-masks with SAM
    maps: list[str] = field(default_factory=lambda: list(MAP_METHODS))  # umap, tsne or none
    color_by: list[str] = field(default_factory=lambda: list(maps.COLOR_KEYS))
    min_positives: int = 5  # default findings: positives and negatives in the train rows, positives in the test rows
    backbone: str | None = None  # architecture of a random encoder (default: the first encoder's, else resnet18)
    device: str = "auto"
    batch_size: int = 32
    n_bootstrap: int = 1000  # patient-bootstrap replicates of the localization intervals; 0: none
    seed: int = 0  # image draw, random init, random maps, bootstrap

    def __post_init__(self) -> None:
        if self.cam not in CAM_METHODS:
            raise ConfigError(f"--cam {self.cam!r}: expected one of {', '.join(CAM_METHODS)}")
        if self.saliency not in (*SALIENCY_METHODS, "none"):
            raise ConfigError(f"--saliency {self.saliency!r}: expected one of {', '.join(SALIENCY_METHODS)} or none")
        if self.head not in HEADS:
            raise ConfigError(f"--head {self.head!r}: expected one of {', '.join(HEADS)}")
        for option, given, allowed in (("--maps", self.maps, (*MAP_METHODS, "none")),
                                       ("--color-by", self.color_by, maps.COLOR_KEYS)):
            unknown = sorted(set(given) - set(allowed))
            if unknown:
                raise ConfigError(f"{option}: unknown {', '.join(unknown)}; expected some of {', '.join(allowed)}")
        for key in ("n_images", "batch_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"--{key.replace('_', '-')} must be >= 1, found {getattr(self, key)}")
        if self.gallery_images < 0 or self.n_bootstrap < 0 or self.tolerance < 0:
            raise ConfigError("--gallery-images, --bootstrap and --tolerance must be >= 0")
        if not 0 < self.top_fraction <= 1:
            raise ConfigError(f"--top-fraction must be in (0, 1], found {self.top_fraction}")


@dataclass
class Selection:
    """The test images explained for one finding: cache rows, their masks (``None``: not localizable)."""

    finding: str
    rows: np.ndarray
    masks: np.ndarray | None


def run_explain(encoders: list[str | Path], data: str | Path, out: str | Path, baseline: str | Path | None = None,
                **settings: Any) -> dict:
    """Explain ``encoders`` (run dirs, ``random``, ``open_clip:NAME``) and ``baseline`` on cache ``data``; write
    ``out/metrics.json``, ``out/index.html`` and the PNGs; return the metrics (schema: ``docs/explain.md``)."""
    cfg = build(ExplainConfig, {k: v for k, v in settings.items() if v is not None})
    if not encoders:
        raise ConfigError("cxrl explain needs at least one --encoder")
    started = time.perf_counter()
    cache = open_cache(data)
    notes: list[str] = []
    candidates = cfg.findings or _outlined(cache, notes)
    ev = prepare_data(cache, None, EvalConfig(pathologies=candidates, seed=cfg.seed))
    notes += ev.notes
    findings = ev.pathologies if cfg.findings else _with_enough_labels(ev, cfg.min_positives, notes)
    columns = [ev.pathologies.index(f) for f in findings]
    labels, test_labels = ev.labels[:, columns], ev.test_labels[ev.test][:, columns]
    selections = _selections(cache, ev, findings, test_labels, cfg, notes)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    dev = resolve_device(cfg.device)
    entries, embeddings, prompt_sims = [], {}, {}
    specs = [(e, "encoder") for e in encoders] + ([(baseline, "baseline")] if baseline is not None else [])
    for spec, role in specs:
        backbone = cfg.backbone or (entries[0]["backbone"] if entries else None) or "resnet18"
        model, info = resolve_encoder(spec, EvalConfig(backbone=backbone, seed=cfg.seed))
        name = _unique(f"{info['name']} (baseline)" if role == "baseline" else info["name"], embeddings)
        target_layer(spatial_encoder(model, name))  # no spatial stage: a ConfigError before any work
        size = int(info.get("image_size") or cache.image_size)
        feats = cached_features(model, info["fingerprint"], cache, size, out / "features", dev, cfg.batch_size)
        text = _image_text(spec)
        classes = None if text is None else class_embeddings(text.text.to(dev), findings, DEFAULT_PROMPTS)
        scored, cam_targets, head = _head(model, text, classes, cfg.head, feats, ev, labels, findings, dev, notes,
                                          name)
        entry = {**info, "name": name, "role": role, "image_size": size, **head}
        entry["localization"], entry["gallery"] = _explain(scored, cam_targets, name, cache, selections, size, dev,
                                                           cfg, out)
        entry["macro"] = _macro(entry["localization"])
        if (trained := Path(str(spec)) / FINDING_SIMILARITY).is_file():  # written by `cxrl pretrain label_text`
            entry["finding_similarity"] = shutil.copy(trained, out / f"finding_similarity_{_slug(name)}.png").name
        entries.append(entry)
        embeddings[name] = feats[ev.test]
        if classes is not None:
            prompt_sims[name] = maps.cosine_matrix(classes[:, 0])
            if cfg.saliency != "none":
                entry["saliency"] = _saliency(spec, text, cache, findings, name, dev, cfg, out)
    plots, similarity = _pictures(embeddings, prompt_sims, cache, ev, test_labels, findings, cfg, out, notes)
    metrics = {
        "schema_version": SCHEMA_VERSION,
        "cxrl_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "data": {"path": str(cache.path), "count": len(cache), "image_size": cache.image_size,
                 "n_test_rows": int(len(ev.test)),
                 "n_test_patients": int(cache.records["patient_id"].iloc[ev.test].nunique())},
        "settings": to_dict(cfg),
        "findings": findings,
        "encoders": entries,
        "similarity": similarity,
        "plots": plots,
        "notes": notes,
        "seconds": round(time.perf_counter() - started, 1),
    }
    metrics = json_safe(metrics)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    write_gallery(metrics, out)
    return metrics


def _saliency(spec: str | Path, model: Any, cache: Cache, findings: list[str], name: str, dev, cfg: ExplainConfig,
              out: Path) -> dict:
    """Zero-shot saliency segmentation (:func:`cxrl.explain.saliency.saliency_dice`) of an image-text encoder on
    the test images: Dice per finding with and without the CRF (and SAM), beside the baselines, and its overlays."""
    folder = out / "saliency" / _slug(name)
    result = saliency_dice(spec, cache, findings, splits=("test",), settings=SaliencySettings(method=cfg.saliency),
                           sam_checkpoint=cfg.sam_checkpoint, device=dev, max_images=cfg.n_images, out=folder,
                           n_boot=cfg.n_bootstrap, seed=cfg.seed, model=model)
    for entry in result["findings"].values():
        if "overlay" in entry:
            entry["overlay"] = (folder / entry["overlay"]).relative_to(out).as_posix()
    return result


def _outlined(cache: Cache, notes: list[str]) -> list[str]:
    """The canonical findings the cache outlines (masks or boxes); all of them, with a note, if it outlines none."""
    outlined = set(dense_findings(cache.records))
    chosen = [p for p in PATHOLOGIES if p in outlined]
    if not chosen:
        notes.append("the cache outlines no finding (no masks or boxes): CAMs are drawn without localization numbers")
        return list(PATHOLOGIES)
    return chosen


def _with_enough_labels(ev: EvalData, min_positives: int, notes: list[str]) -> list[str]:
    """The findings with >= ``min_positives`` positives and negatives in the train rows (the probe) and positives
    in the test rows (the CAMs); test negatives are not needed. The others are named in ``notes``."""
    train = ev.labels[(ev.records["split"] == "train").to_numpy()]
    test = ev.test_labels[ev.test]
    counts = {p: ((train[:, k] == 1).sum(), (train[:, k] == 0).sum(), (test[:, k] == 1).sum())
              for k, p in enumerate(ev.pathologies)}
    chosen = [p for p, c in counts.items() if min(c) >= min_positives]
    left_out = [f"{p} (train {c[0]}+/{c[1]}-, test {c[2]}+)" for p, c in counts.items() if p not in chosen]
    if left_out:
        notes.append(f"left out, fewer than --min-positives {min_positives} train positives or negatives or test "
                     f"positives: {', '.join(left_out)}")
    if not chosen:
        raise DataError(f"no finding has >= {min_positives} positives and negatives in the train rows and positives "
                        "in the test rows; lower --min-positives or name some with --findings")
    return chosen


def _selections(cache: Cache, ev: EvalData, findings: list[str], test_labels: np.ndarray, cfg: ExplainConfig,
             notes: list[str]) -> list[Selection]:
    """Per finding, at most ``n_images`` positive test rows: those with a non-empty mask where any has one."""
    rng = np.random.default_rng(cfg.seed)
    selections = []
    for k, finding in enumerate(findings):
        positive = ev.test[test_labels[:, k] == 1]
        rows, masks = outlined_masks(cache.records, positive, finding, cache.image_size)
        if not len(rows):
            notes.append(f"{finding}: no mask in its {len(positive)} positive test rows; CAMs without localization")
            rows, masks = positive, None
        pick = np.sort(rng.choice(len(rows), min(cfg.n_images, len(rows)), replace=False))
        selections.append(Selection(finding, rows[pick], None if masks is None else masks[pick]))
    return selections


def _image_text(spec: str | Path) -> Any:
    """The image-text model of ``spec`` when it has a text side (an image-text run, ``open_clip:``), else None."""
    from cxrl.models.image_text import PROJECTION_META, load_image_text
    from cxrl.models.open_clip_door import PREFIX

    if str(spec).startswith(PREFIX) or (Path(spec) / PROJECTION_META).is_file():
        return load_image_text(spec)
    return None


def _head(model, text, classes: np.ndarray | None, head: str, feats: np.ndarray, ev: EvalData, labels: np.ndarray,
          findings: list[str], dev: torch.device, notes: list[str], name: str
          ) -> tuple[torch.nn.Module, list[Callable], dict]:
    """The module the CAMs run through and, per finding, the score of its output they explain: an image-text
    encoder's image side and CheXzero's zero-shot logit ``cos(v, e+) - cos(v, e-)`` (prompt ensembles ``classes``)
    when asked, else the linear probe fitted on the train rows and its logit."""
    if head == "zeroshot":
        if text is not None:
            ensembles = torch.as_tensor(classes, dtype=torch.float32)
            return text.image, [TextSimilarity(e[0], e[1], scale=1.0) for e in ensembles], {"head": "zeroshot"}
        notes.append(f"{name}: no text side, so its CAMs are of the linear probe, not of a zero-shot head")
    train = np.flatnonzero((ev.records["split"] == "train").to_numpy())
    probe = fit_linear_probe(feats[train], labels[train], feats[ev.valid], labels[ev.valid], device=str(dev))
    return (ProbeClassifier(model, probe), [ClassifierOutputTarget(k) for k in range(len(findings))],
            {"head": "probe", "probe_C": dict(zip(findings, probe.C.tolist(), strict=True))})


def _explain(scored: torch.nn.Module, cam_targets: list[Callable], name: str, cache: Cache,
             selections: list[Selection], size: int, dev: torch.device, cfg: ExplainConfig, out: Path
             ) -> tuple[dict, dict]:
    """CAMs of every selected image; per finding the localization summary (None without masks) and the gallery."""
    encoder = spatial_encoder(scored, name)
    rng = np.random.default_rng(cfg.seed)
    patients = cache.records["patient_id"].astype(str).to_numpy()
    localization, gallery = {}, {}
    bar = tqdm(total=sum(len(t.rows) for t in selections), desc=f"CAM {name}", unit="img")
    for picked, cam_target in zip(selections, cam_targets, strict=True):
        cams = []
        for start in range(0, len(picked.rows), cfg.batch_size):
            rows = picked.rows[start:start + cfg.batch_size]
            cams.append(class_activation_maps(scored, encoder, cache.images[rows], [cam_target] * len(rows),
                                              cfg.cam, size, dev))
            bar.update(len(rows))
        cam = np.concatenate(cams) if cams else np.zeros((0, cache.image_size, cache.image_size), np.float32)
        scores = None
        if picked.masks is not None:
            scores = pointing.score_maps(cam, picked.masks, rng, cfg.tolerance, cfg.top_fraction)
            localization[picked.finding] = pointing.summarize(scores, patients[picked.rows], cfg.n_bootstrap,
                                                              cfg.seed)
        else:
            localization[picked.finding] = None
        gallery[picked.finding] = [
            _gallery_item(cache, int(row), cam[i], None if picked.masks is None else picked.masks[i], scores, i,
                          out / "cams" / _slug(name) / _slug(picked.finding) / f"{int(row)}.png", out)
            for i, row in enumerate(picked.rows[: cfg.gallery_images])
        ]
    bar.close()
    return localization, gallery


def _gallery_item(cache: Cache, row: int, cam: np.ndarray, mask: np.ndarray | None, scores: dict | None, i: int,
                  path: Path, out: Path) -> dict:
    write_overlay(cache.images[row], cam, mask, path)
    item = {"row": row, "image_path": str(cache.records["image_path"].iloc[row]), "png": str(path.relative_to(out))}
    if scores is not None:
        item |= {"hit": float(scores["hit"][i]), "iou": float(scores["iou"][i])}
    return item


def _macro(localization: dict) -> dict:
    """Means over the localized findings of each localization number."""
    scored = [v for v in localization.values() if v and v.get("n_images")]
    return {k: float(np.mean([v[k] for v in scored])) for k in LOCALIZATION_KEYS} if scored else {}


def _pictures(embeddings: dict, prompt_sims: dict, cache: Cache, ev: EvalData, test_labels: np.ndarray,
              findings: list[str], cfg: ExplainConfig, out: Path, notes: list[str]) -> tuple[dict, dict]:
    """The embedding maps and the similarity heatmaps (files relative to ``out``) and the similarity matrices."""
    plots: dict[str, str] = {}
    methods = [m for m in cfg.maps if m != "none"]
    if methods and len(ev.test) < 5:
        notes.append(f"embedding maps skipped: {len(ev.test)} test rows")
    elif methods:
        colourings, more = maps.colourings(cache.records.iloc[ev.test], test_labels, findings, cfg.color_by)
        notes.extend(more)
        for method in methods:
            path = maps.embedding_maps(embeddings, colourings, out / f"embedding_{method}.png", method)
            plots[f"embedding_{method}"] = path.name
    prototypes = {name: maps.cosine_matrix(maps.class_prototypes(x, test_labels)) for name, x in embeddings.items()}
    plots["prototype_similarity"] = maps.similarity_heatmaps(
        prototypes, findings, out / "prototype_similarity.png",
        "class prototypes: cosine of the centred mean test embedding of each finding's positives").name
    if prompt_sims:
        plots["prompt_similarity"] = maps.similarity_heatmaps(
            prompt_sims, findings, out / "prompt_similarity.png",
            "positive prompt ensembles: cosine similarity in the joint space").name
    return plots, {"prototypes": prototypes, "prompts": prompt_sims}


def _unique(name: str, taken: dict) -> str:
    candidate, i = name, 2
    while candidate in taken:
        candidate, i = f"{name} #{i}", i + 1
    return candidate


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "x"

