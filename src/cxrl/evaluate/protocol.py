"""The evaluation driver: label fractions x seeds of a registered protocol (:mod:`cxrl.evaluate.protocols`: linear
probe, fine-tuning, ...), optional cross-dataset transfer.

Splits: every cache's records must be patient-disjoint (:func:`cxrl.data.splits.check_no_leakage`, else
:class:`~cxrl.errors.LeakageError`). Training rows are ``label_fraction(train rows, fraction, seed)``; model
selection (probe ``C``, fine-tuning early stopping, decision thresholds) uses the ``valid`` rows; metrics use the
``test`` rows. A cache without test rows is evaluated on its ``valid`` rows, and the selection split is then
carved from the train patients (``selection_fraction`` of them, seeded). With ``target`` the model is trained on
``data`` and tested on the target's test rows (all its rows if it has no test split) over the shared pathologies.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from cxrl import __version__
from cxrl.config import build, to_dict
from cxrl.data.cache import Cache, open_cache
from cxrl.data.labels import PATHOLOGIES, apply_uncertainty_policy, label_matrix
from cxrl.data.splits import check_no_leakage, label_fraction, patient_rank
from cxrl.errors import ConfigError, DataError
from cxrl.evaluate.features import encoder_fingerprint
from cxrl.evaluate.finetune import FinetuneSettings
from cxrl.evaluate.metrics import THRESHOLD_RULES
from cxrl.evaluate.probe import DEFAULT_C_GRID, resolve_device
from cxrl.evaluate.protocols import PROTOCOLS, EvalProtocol, EvalSetup, protocol_class
from cxrl.evaluate.subgroups import AGE_BINS, check_subgroup_settings, present_keys
from cxrl.precision import canonical_precision

log = logging.getLogger(__name__)
DEFAULT_FRACTIONS: tuple[float, ...] = (0.01, 0.1, 0.25, 0.5, 1.0)
SCHEMA_VERSION = 1
_CARVE_SEED_OFFSET = 7919  # the carved selection split must not follow label_fraction's patient order


@dataclass
class EvalConfig:
    """Everything that defines an evaluation (saved as ``metrics.json["protocol"]``)."""

    protocol: str = "linear"  # a registered protocol (cxrl.evaluate.protocols): linear | finetune | ...
    fractions: list[float] = field(default_factory=lambda: list(DEFAULT_FRACTIONS))
    seeds: int = 3  # label-subset seeds seed, seed + 1, ...
    seed: int = 0  # base seed: random encoder init, carved selection split, bootstrap
    pathologies: list[str] | None = None  # default: >= min_positives positives and negatives in train and test
    min_positives: int = 5
    uncertainty: str = "ignore"  # ignore | zeros | ones
    blank: str = "nan"  # nan | zero: what "not mentioned" becomes
    image_size: int | None = None  # default: the encoder's training size, else the cache's
    device: str = "auto"
    precision: Any = "32-true"  # 32 | 16 | bf16 | "bf16-mixed" ... (cxrl.precision): the encoder's autocast
    batch_size: int = 128
    threshold_rule: str = "max_f1"  # max_f1 | youden, chosen on the selection split
    n_bootstrap: int = 1000
    selection_fraction: float = 0.15  # share of train patients carved for selection when a cache lacks test rows
    c_grid: list[float] = field(default_factory=lambda: list(DEFAULT_C_GRID))
    finetune: FinetuneSettings = field(default_factory=FinetuneSettings)  # also the dense protocols' training
    freeze_encoder: bool = False  # segmentation / detection: train the decoder or head on a frozen encoder
    embedding: str = "umap"  # umap | tsne | none: 2-D map of test embeddings in the report
    backbone: str = "resnet18"  # architecture of a random encoder; metrics.json records the one evaluated
    subgroups: list[str] | None = None  # sex, age, view, dataset; default: those with 2+ values in the test rows
    age_bins: list[float] = field(default_factory=lambda: list(AGE_BINS))  # left edges in years; last is open
    prompts: str | None = None  # zero-shot: a YAML of {finding: {positive: [...], negative: [...]}} (default: built-in)

    def __post_init__(self) -> None:
        self.precision = canonical_precision(self.precision)
        checks = {
            "protocol": tuple(PROTOCOLS),
            "uncertainty": ("ignore", "zeros", "ones"),
            "blank": ("nan", "zero"),
            "threshold_rule": THRESHOLD_RULES,
            "embedding": ("umap", "tsne", "none"),
        }
        for key, allowed in checks.items():
            if getattr(self, key) not in allowed:
                raise ConfigError(f"evaluation {key} {getattr(self, key)!r}: expected one of {', '.join(allowed)}")
        if protocol_class(self.protocol).label_free:
            self.fractions, self.seeds = [0.0], 1  # no training labels: one run
        elif not self.fractions or any(not 0 < f <= 1 for f in self.fractions):
            raise ConfigError(f"label fractions must be in (0, 1], found {self.fractions}")
        if self.seeds < 1:
            raise ConfigError(f"seeds must be >= 1, found {self.seeds}")
        if self.n_bootstrap < 0:
            raise ConfigError(f"bootstrap replicates must be >= 0 (0: no intervals), found {self.n_bootstrap}")
        check_subgroup_settings(self.subgroups, self.age_bins)
        unknown = sorted(set(self.pathologies or ()) - set(PATHOLOGIES))
        if unknown:
            raise ConfigError(f"unknown pathologies {unknown}; valid: {', '.join(PATHOLOGIES)}")


@dataclass
class EvalData:
    """Row indices and targets of the three roles, plus the records used to draw label fractions."""

    records: pd.DataFrame  # source records with the selection split as "valid"
    labels: np.ndarray  # (N_source, K) after the uncertainty policy
    valid: np.ndarray
    test_cache: Cache
    test: np.ndarray  # rows of test_cache
    test_labels: np.ndarray  # (N_test_cache, K)
    pathologies: list[str]
    notes: list[str]


def run_evaluation(
    encoder: str | Path | nn.Module,
    data: str | Path,
    out: str | Path,
    protocol: str = "linear",
    fractions: tuple[float, ...] | list[float] = DEFAULT_FRACTIONS,
    seeds: int = 3,
    target: str | Path | None = None,
    encoder_weights: str | Path | None = None,
    **settings: Any,
) -> dict:
    """Evaluate ``encoder`` (a run dir, ``"random"``, ``open_clip:NAME`` with optional local ``encoder_weights``, or
    a module) on cache ``data``; write ``out/metrics.json``, ``out/report.html``, ``out/report.md`` and plots; return
    the metrics dict (schema: ``docs/metrics.md``).

    ``settings`` are :class:`EvalConfig` fields (``finetune`` may be a dict or ``epochs=`` for short).
    """
    cfg = _make_config(protocol=protocol, fractions=[float(f) for f in fractions], seeds=int(seeds), **settings)
    started = time.perf_counter()
    source = open_cache(data)
    target_cache = open_cache(target) if target is not None else None
    model, encoder_info = resolve_encoder(encoder, cfg, encoder_weights)
    image_text = _image_text(encoder, encoder_weights, cfg)
    cfg = dataclasses.replace(cfg, backbone=str(encoder_info["backbone"]))  # a saved encoder names its own
    size = int(cfg.image_size or encoder_info.get("image_size") or source.image_size)
    dev = resolve_device(cfg.device)
    ev = prepare_data(source, target_cache, cfg)
    cfg = _resolve_subgroups(cfg, ev)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    log.info(
        "evaluate: %s on %s, %d pathologies, image size %d",
        encoder_info["name"],
        source.path,
        len(ev.pathologies),
        size,
    )
    runs, best = _run_all(EvalSetup(model, encoder_info, source, ev, cfg, size, dev, out, image_text))
    metrics = {
        "schema_version": SCHEMA_VERSION,
        "cxrl_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "encoder": {**encoder_info, "image_size": size},
        "data": _data_info(source, target_cache, ev),
        "protocol": to_dict(cfg),
        "pathologies": ev.pathologies,
        "runs": runs,
        "summary": summarize(runs, ev.pathologies, protocol_class(cfg.protocol).summary_keys),
        "notes": ev.notes,
        "seconds": round(time.perf_counter() - started, 1),
    }
    from cxrl.evaluate.report import write_reports

    write_reports(metrics, best, out)
    return metrics


def _resolve_subgroups(cfg: EvalConfig, ev: EvalData) -> EvalConfig:
    """``cfg`` with ``subgroups`` settled: the keys asked for, or those under which the test rows differ."""
    if cfg.subgroups is not None:
        return cfg
    keys = present_keys(ev.test_cache.records.iloc[ev.test], cfg.age_bins)
    ev.notes.append(f"subgroups: {', '.join(keys) or 'none'} (the record columns with two or more test values)")
    return dataclasses.replace(cfg, subgroups=keys)


def _make_config(**settings: Any) -> EvalConfig:
    ft = settings.pop("finetune", {})
    ft = dataclasses.asdict(ft) if isinstance(ft, FinetuneSettings) else dict(ft)
    for key in ("epochs", "patience", "lr", "head_lr", "layer_decay"):
        value = settings.pop(key, None)
        if value is not None:
            ft[key] = value
    settings["fractions"] = sorted(set(settings["fractions"]))
    if settings.get("image_size") is not None and settings["image_size"] < 1:  # 0 must not read as "default"
        raise ConfigError(f"image_size: expected a positive number of pixels (or none for the encoder's), "
                          f"found {settings['image_size']}")
    return build(EvalConfig, {**{k: v for k, v in settings.items() if v is not None}, "finetune": ft})


def _image_text(encoder: str | Path | nn.Module, weights: str | Path | None, cfg: EvalConfig) -> Any:
    """The encoder's image-text model when the protocol needs text (:func:`cxrl.models.image_text.load_image_text`)."""
    if not protocol_class(cfg.protocol).needs_text:
        return None
    if isinstance(encoder, nn.Module) or str(encoder) == "random":
        raise ConfigError(f"--protocol {cfg.protocol} needs an image-text encoder (a `cxrl pretrain convirt` run or "
                          f"open_clip:NAME), not {'a module' if isinstance(encoder, nn.Module) else 'random'}")
    from cxrl.models.image_text import load_image_text

    return load_image_text(encoder, weights)


def resolve_encoder(
    encoder: str | Path | nn.Module, cfg: EvalConfig, weights: str | Path | None = None
) -> tuple[nn.Module, dict]:
    """The module to evaluate and its description (name, method, backbone, source, fingerprint)."""
    from cxrl.models.open_clip_door import PREFIX

    if weights is not None and not str(encoder).startswith(PREFIX):
        raise ConfigError("--encoder-weights applies to open_clip:NAME encoders only; a run folder holds its own")
    if isinstance(encoder, nn.Module):
        model, info = encoder, {"name": type(encoder).__name__, "method": "custom", "source": "module"}
        info["backbone"] = getattr(encoder, "name", type(encoder).__name__)
    elif str(encoder) == "random":
        from cxrl.models import create_encoder

        torch.manual_seed(cfg.seed)
        model = create_encoder(cfg.backbone, in_chans=1)
        info = {"name": f"random-{cfg.backbone}", "method": "random", "backbone": cfg.backbone, "source": "random"}
    elif str(encoder).startswith(PREFIX):
        from cxrl.models import create_encoder

        model = create_encoder(str(encoder), weights=weights).eval()
        info = {"name": str(encoder), "method": "open_clip", "backbone": str(encoder),
                "source": str(weights) if weights else str(encoder)}
    else:
        from cxrl.models import load_encoder

        check_export(Path(encoder))
        model, meta = load_encoder(encoder)
        path = Path(encoder).resolve()
        run_dir = path if path.is_dir() else path.parent
        info = {
            "name": run_dir.name,
            "method": meta.get("method"),
            "backbone": meta.get("backbone"),
            "source": str(path),
            "image_size": meta.get("image_size"),
        }
    info["num_features"] = int(getattr(model, "num_features", 0))
    info["fingerprint"] = encoder_fingerprint(model)
    return model, info


def check_export(path: Path) -> None:
    """Refuse a training checkpoint, or a run folder without an exported encoder, saying how to get one."""
    from cxrl.models.export import WEIGHTS_FILE  # imports timm: only when a saved encoder is asked for

    resume = "`cxrl pretrain METHOD --data CACHE --out RUN --resume` finishes a stopped run and exports it"
    if path.suffix == ".ckpt":
        raise DataError(
            f"--encoder {path}: a Lightning training checkpoint, which cxrl never unpickles; pass the run folder "
            f"once it holds {WEIGHTS_FILE} ({resume})"
        )
    if path.is_dir() and not (path / WEIGHTS_FILE).is_file():
        stopped = (path / "checkpoints" / "last.ckpt").is_file()
        raise DataError(
            f"--encoder {path}: no exported encoder ({WEIGHTS_FILE}) in it; "
            + (f"its pre-training stopped before the end: {resume}" if stopped else "is it a `cxrl pretrain` run?")
        )


def prepare_data(source: Cache, target: Cache | None, cfg: EvalConfig) -> EvalData:
    """Check leakage, settle the selection/test roles, apply the label policy and choose pathologies."""
    check_no_leakage(source.records)
    records, notes = _selection_split(source.records, cfg, has_target=target is not None)
    if target is not None:
        check_no_leakage(target.records)
        has_test = (target.records["split"] == "test").any()
        test_cache, test = target, _rows(target.records, "test") if has_test else np.arange(len(target))
        if not has_test:
            notes.append(f"target {target.path} has no test split: all {len(target)} rows are test rows")
    else:
        test_cache, test = source, _rows(records, "test")
    policy = dict(policy=cfg.uncertainty, blank=cfg.blank)
    all_labels = apply_uncertainty_policy(label_matrix(records, PATHOLOGIES), **policy)
    all_test = apply_uncertainty_policy(label_matrix(test_cache.records, PATHOLOGIES), **policy)
    train = _rows(records, "train")
    names = _choose_pathologies(all_labels[train], all_test[test], cfg, notes, target is not None)
    cols = [PATHOLOGIES.index(p) for p in names]
    return EvalData(
        records, all_labels[:, cols], _rows(records, "valid"), test_cache, test, all_test[:, cols], names, notes
    )


def _rows(records: pd.DataFrame, split: str) -> np.ndarray:
    return np.flatnonzero((records["split"] == split).to_numpy())


def _selection_split(records: pd.DataFrame, cfg: EvalConfig, has_target: bool) -> tuple[pd.DataFrame, list[str]]:
    """Records whose ``valid`` rows are the selection split and ``test`` rows the test split."""
    splits = set(records["split"].dropna())
    if "train" not in splits:
        raise DataError("the evaluation cache has no train rows")
    notes: list[str] = []
    out = records.copy()
    if "test" not in splits and not has_target:
        out.loc[out["split"] == "valid", "split"] = "test"
        notes.append("no test split: the valid rows are the test rows")
        splits = splits - {"valid"} | {"test"}
    if "valid" not in splits:
        train = out["split"] == "train"
        patients = out.loc[train, "patient_id"].astype(str).to_numpy()
        carved = patient_rank(patients, seed=cfg.seed + _CARVE_SEED_OFFSET) < cfg.selection_fraction
        out.loc[out.index[train][carved], "split"] = "valid"
        notes.append(
            f"selection split carved from {cfg.selection_fraction:.0%} of the train patients ({int(carved.sum())} rows)"
        )
    if not has_target and not (out["split"] == "test").any():
        raise DataError(
            "the evaluation cache has train rows only: give it valid/test splits (cxrl prepare assigns them by "
            "patient) or pass --target"
        )
    return out, notes


def _choose_pathologies(train_y, test_y, cfg: EvalConfig, notes: list[str], transfer: bool) -> list[str]:
    """``cfg.pathologies`` that have labels in train and test, else every pathology with >= ``min_positives``
    positives and negatives in both; the left-out ones are named in ``notes`` with their counts."""
    test_rows = "target test" if transfer else "test"
    counts = {
        p: (_pos_neg(train_y[:, k]), _pos_neg(test_y[:, k]))
        for k, p in enumerate(PATHOLOGIES)
        if p in (cfg.pathologies or PATHOLOGIES)
    }
    if cfg.pathologies:
        chosen = [p for p in cfg.pathologies if sum(counts[p][0]) and sum(counts[p][1])]
        why = "no labels in the train or test rows"
    else:
        chosen = [p for p, c in counts.items() if min(*c[0], *c[1]) >= cfg.min_positives]
        why = f"fewer than --min-positives {cfg.min_positives} positives or negatives in the train or test rows"
    left_out = [f"{p} (train {c[0][0]}+/{c[0][1]}-, {test_rows} {c[1][0]}+/{c[1][1]}-)"
                for p, c in counts.items() if p not in chosen and (sum(c[0]) or sum(c[1]))]
    if left_out:
        notes.append(f"left out, {why}: {', '.join(left_out)}")
        log.info("pathologies %s", notes[-1])
    if not chosen:
        where = f"in the source train and {test_rows} rows"
        if cfg.pathologies:
            raise DataError(
                f"none of --pathologies {', '.join(cfg.pathologies)} has labels {where}"
                + (f"; labelled there: {', '.join(left_out)}" if left_out else "; those rows hold none of them")
            )
        raise DataError(
            f"no pathology has >= {cfg.min_positives} positives and negatives {where}; "
            "lower --min-positives or name some with --pathologies"
        )
    if transfer:
        notes.append(f"transfer: {len(chosen)} shared pathologies: {', '.join(chosen)}")
    return chosen


def _pos_neg(y: np.ndarray) -> tuple[int, int]:
    return int((y == 1).sum()), int((y == 0).sum())


def _run_all(setup: EvalSetup) -> tuple[list[dict], dict]:
    """Every (fraction, seed) run of the protocol ``setup.cfg.protocol``; also returns the largest fraction's
    first-seed test scores, labels and embedding for the plots."""
    ev, cfg = setup.ev, setup.cfg
    protocol = protocol_class(cfg.protocol)(setup)
    runs, best = [], {}
    for fraction in cfg.fractions:
        for seed in range(cfg.seed, cfg.seed + cfg.seeds):
            train = np.arange(0) if protocol.label_free else label_fraction(
                ev.records, fraction, seed=seed, pathologies=ev.pathologies)
            predictions = protocol.predict(protocol.fit(train, seed))
            result = protocol.metrics(predictions, seed, fraction)
            runs.append(
                {
                    "fraction": fraction,
                    "seed": seed,
                    "n_train_images": int(len(train)),
                    "n_train_patients": int(ev.records["patient_id"].iloc[train].nunique()),
                    "selection": predictions.selection,
                    **result,
                }
            )
            headline = protocol.summary_keys[0]
            log.info("fraction %.3g seed %d: %s %s", fraction, seed, headline, result.get(headline))
            if seed == cfg.seed:
                best = {"scores": predictions.test, "labels": ev.test_labels[ev.test],
                        "embedding": predictions.embedding}
    return runs, best


def summarize(runs: list[dict], pathologies: list[str], keys: tuple[str, ...] = EvalProtocol.summary_keys
              ) -> dict[str, dict]:
    """Per fraction (key ``str(fraction)``): mean and sample std over seeds of each of ``keys`` (macro AUROC/AP/F1/
    kappa by default) and, where the runs have ``per_class`` results, of per-class AUROC."""
    out = {}
    for fraction in sorted({r["fraction"] for r in runs}):
        group = [r for r in runs if r["fraction"] == fraction]
        entry: dict[str, Any] = {
            "fraction": fraction,
            "n_seeds": len(group),
            "n_train_images": [r["n_train_images"] for r in group],
        }
        for key in keys:
            entry.update(_mean_std(key, [r[key] for r in group]))
        if all("per_class" in r for r in group):
            entry["per_class_auroc"] = {
                p: _mean_std("auroc", [r["per_class"][p]["auroc"] for r in group]) for p in pathologies
            }
        out[str(fraction)] = entry
    return out


def _mean_std(key: str, values: list) -> dict[str, Any]:
    v = np.array(values, dtype=np.float64)  # None -> NaN
    v = v[np.isfinite(v)]
    mean = float(v.mean()) if len(v) else None
    std = float(v.std(ddof=1)) if len(v) > 1 else (0.0 if len(v) else None)
    return {f"{key}_mean": mean, f"{key}_std": std, f"{key}_values": [float(x) for x in v]}


def _data_info(source: Cache, target: Cache | None, ev: EvalData) -> dict:
    def describe(c: Cache) -> dict:
        return {
            "path": str(c.path),
            "count": len(c),
            "image_size": c.image_size,
            "datasets": sorted(map(str, c.records["dataset"].dropna().unique())),
        }

    return {
        "source": describe(source),
        "target": describe(target) if target is not None else None,
        "n_selection_rows": int(len(ev.valid)),
        "n_test_rows": int(len(ev.test)),
        "n_test_patients": int(ev.test_cache.records["patient_id"].iloc[ev.test].nunique()),
    }
