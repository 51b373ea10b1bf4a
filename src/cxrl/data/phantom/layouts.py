"""Write a phantom dataset in the real CheXpert or MIMIC-CXR-JPG on-disk layout, plus its ground truth.

CheXpert: ``train.csv``, ``valid.csv`` (radiologist-style 0/1 labels), ``{train,valid}/patientNNNNN/studyN/
view1_frontal.jpg`` with ``Path`` prefixed ``CheXpert-v1.0-small/``. MIMIC: ``files/pXX/pSUBJECT/sSTUDY/
<dicom_id>.jpg`` (histogram-equalized like the real JPGs), reports ``files/pXX/pSUBJECT/sSTUDY.txt`` and the
``mimic-cxr-2.0.0-{metadata,split,chexpert}.csv.gz`` tables. Truth in ``phantom_truth/``: ``truth.parquet``
(one row per image; ``masks`` = JSON ``{finding: RLE}``, Kaggle "absolute" column-major RLE of the written
image's pixels, decoded by ``truth_mask``) and ``manifest.json``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from cxrl.data.labels import CHEXPERT_PATHOLOGIES
from cxrl.data.phantom.effects import SubgroupEffect, hidden_findings
from cxrl.data.phantom.render import MASK_BITS, render
from cxrl.data.phantom.report import dataset_report, exam_description
from cxrl.data.phantom.sampling import ImageSpec, plan_dataset
from cxrl.data.rle import decode_rle
from cxrl.data.workers import cv2_pool
from cxrl.errors import ConfigError, DataError

log = logging.getLogger(__name__)
LAYOUTS = ("chexpert", "mimic")
REPORT_SOURCES = ("phantom", "iu")  # written reports: the phantom's own, or real IU texts (MIMIC layout only)
CHEXPERT_PREFIX = "CheXpert-v1.0-small/"
MIMIC_SPLIT = {"train": "train", "valid": "validate", "test": "test"}
JPEG_QUALITY = 95
CHUNK = 16


@dataclass(frozen=True)
class Job:
    """One image to render and write, with its path relative to the dataset root and the findings it leaves
    undrawn (a planted subgroup effect, :mod:`cxrl.data.phantom.effects`)."""

    spec: ImageSpec
    image: str
    hidden: tuple[str, ...] = ()


def _chexpert_paths(specs: list[ImageSpec]) -> list[str]:
    return [f"{s.split}/patient{s.patient + 1:05d}/study{s.study}/view1_frontal.jpg" for s in specs]


def _mimic_ids(specs: list[ImageSpec], seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Subject ids (8 digits, leading 1), study ids (8 digits, leading 5), dicom ids (5 hex groups)."""
    rng = np.random.default_rng([seed, 0x313])
    patients = max(s.patient for s in specs) + 1
    subjects = 10_000_000 + rng.choice(9_999_999, patients, replace=False)
    studies = 50_000_000 + rng.choice(9_999_999, len(specs), replace=False)
    words = rng.integers(0, 2**32, (len(specs), 5), dtype=np.uint64)
    dicoms = ["-".join(f"{int(w):08x}" for w in row) for row in words]
    return subjects[[s.patient for s in specs]], studies, dicoms


def _mimic_paths(subjects: np.ndarray, studies: np.ndarray, dicoms: list[str]) -> list[str]:
    return [f"files/p{str(sub)[:2]}/p{sub}/s{st}/{d}.jpg" for sub, st, d in zip(subjects, studies, dicoms, strict=True)]


def _render_chunk(args: tuple[list[Job], str, int, int, bool]) -> list[tuple[str, str]]:
    """Worker: render and write a chunk of images; returns their (boxes, masks) JSON."""
    jobs, root, size, seed, equalize = args
    out, made = [], set()
    for job in jobs:
        drawn = {k: v for k, v in job.spec.findings.items() if k not in job.hidden}
        result = render(replace(job.spec, findings=drawn) if job.hidden else job.spec, size, seed)
        image = cv2.equalizeHist(result.image) if equalize else result.image
        path = Path(root, job.image)
        if path.parent not in made:
            path.parent.mkdir(parents=True, exist_ok=True)
            made.add(path.parent)
        if not cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
            raise DataError(f"could not write {path}")
        out.append((result.boxes_json(), result.masks_json()))
    return out


def _render_all(jobs: list[Job], root: Path, size: int, seed: int, equalize: bool,
                workers: int) -> list[tuple[str, str]]:
    """Render every job (in ``workers`` processes when > 1, see :mod:`cxrl.data.workers`), in order, with a bar."""
    chunks = [(jobs[i : i + CHUNK], str(root), size, seed, equalize) for i in range(0, len(jobs), CHUNK)]
    drawn: list[tuple[str, str]] = []
    with tqdm(total=len(jobs), desc="phantom", unit="img") as bar, contextlib.ExitStack() as stack:
        pool = cv2_pool(min(workers, len(chunks))) if workers > 1 and len(chunks) > 1 else None
        parts = stack.enter_context(pool).imap(_render_chunk, chunks) if pool else map(_render_chunk, chunks)
        for part in parts:
            drawn += part
            bar.update(len(part))
    return drawn


def _chexpert_csvs(root: Path, specs: list[ImageSpec], paths: list[str]) -> None:
    rows = []
    for spec, path in zip(specs, paths, strict=True):
        labels = spec.true_labels() if spec.split == "valid" else spec.csv_labels()
        rows.append({"Path": CHEXPERT_PREFIX + path, "Sex": spec.sex, "Age": spec.age, "Frontal/Lateral": "Frontal",
                     "AP/PA": spec.view, **{p: labels[p] for p in CHEXPERT_PATHOLOGIES}})
    frame = pd.DataFrame(rows)
    for split in ("train", "valid"):
        part = frame[[s.split == split for s in specs]]
        part.to_csv(root / f"{split}.csv", index=False, float_format="%.1f")


def _mimic_tables(root: Path, specs: list[ImageSpec], ids, size: int, seed: int) -> None:
    subjects, studies, dicoms = ids
    rng = np.random.default_rng([seed, 0xDA7E])
    base = {p: 21000000 + int(rng.integers(0, 90)) * 10000 + 101 for p in {s.patient for s in specs}}
    meta, split, labels = [], [], []
    for spec, sub, st, dicom in zip(specs, subjects, studies, dicoms, strict=True):
        exam = exam_description(spec.view)
        meta.append({
            "dicom_id": dicom, "subject_id": sub, "study_id": st, "PerformedProcedureStepDescription": exam,
            "ViewPosition": spec.view, "Rows": size, "Columns": size,
            "StudyDate": base[spec.patient] + 10000 * ((spec.study - 1) // 12) + (spec.study - 1) % 12 * 100,
            "StudyTime": round(float(rng.uniform(0, 235959)), 3), "ProcedureCodeSequence_CodeMeaning": exam,
            "ViewCodeSequence_CodeMeaning": "antero-posterior" if spec.view == "AP" else "postero-anterior",
            "PatientOrientationCodeSequence_CodeMeaning": "Recumbent" if spec.supine else "Erect",
        })
        split.append({"dicom_id": dicom, "study_id": st, "subject_id": sub, "split": MIMIC_SPLIT[spec.split]})
        labels.append({"subject_id": sub, "study_id": st, **spec.csv_labels()})
    pd.DataFrame(meta).to_csv(root / "mimic-cxr-2.0.0-metadata.csv.gz", index=False)
    pd.DataFrame(split).to_csv(root / "mimic-cxr-2.0.0-split.csv.gz", index=False)
    chexpert = pd.DataFrame(labels)
    chexpert = chexpert[["subject_id", "study_id", *sorted(CHEXPERT_PATHOLOGIES)]]
    chexpert.to_csv(root / "mimic-cxr-2.0.0-chexpert.csv.gz", index=False, float_format="%.1f")


def _write_reports(root: Path, specs: list[ImageSpec], image_paths: list[str]) -> None:
    for spec, path in zip(specs, image_paths, strict=True):
        report = Path(root, path).parent.with_suffix(".txt")
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(spec.report)


def _write_truth(root: Path, jobs: list[Job], drawn: list[tuple[str, str]], meta: dict) -> None:
    truth = root / "phantom_truth"
    rows = []
    for job, (boxes, masks) in zip(jobs, drawn, strict=True):
        s = job.spec
        rows.append({
            "image": job.image, "patient": s.patient, "study": s.study, "split": s.split,
            "view": s.view, "supine": s.supine, **s.true_labels(),
            "severity": json.dumps({k: f.severity for k, f in s.findings.items()}),
            "laterality": json.dumps({k: f.side for k, f in s.findings.items()}),
            "boxes": boxes, "masks": masks, "report": s.report,
        })
    pd.DataFrame(rows).to_parquet(truth / "truth.parquet", index=False)
    manifest = {**meta, "findings": list(MASK_BITS), "mask_format": "absolute"}
    (truth / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")


def _undrawn_by(effect: SubgroupEffect, job: Job) -> bool:
    return effect.finding in job.hidden and effect.matches(job.spec)


def truth_mask(row: dict, finding: str, size: int) -> np.ndarray:
    """The boolean ``(size, size)`` mask of ``finding`` in one ``truth.parquet`` row (empty when not drawn)."""
    rle = json.loads(row["masks"]).get(finding)
    return decode_rle(rle, size, size, relative=False) if rle else np.zeros((size, size), bool)


def _plan(n: int, seed: int, patients: int | None, layout: str, reports: str) -> tuple[list[ImageSpec], dict]:
    """The specs (with their reports) to write, and what the manifest adds for them."""
    if reports not in REPORT_SOURCES:
        raise ConfigError(f"phantom reports {reports!r}: expected one of {', '.join(REPORT_SOURCES)}")
    if reports == "iu":
        if layout != "mimic":
            raise ConfigError(f"phantom --reports iu writes the MIMIC layout, not {layout!r}")
        from cxrl.data.phantom.iu_pairs import plan_iu_dataset

        specs, ids = plan_iu_dataset(n, seed)
        return specs, {"reports": "iu", "iu_ids": ids}
    mimic = layout == "mimic"
    specs = plan_dataset(n, seed, patients, valid_fraction=0.05 if mimic else 0.07, test_fraction=0.05 * mimic)
    for spec in specs:
        spec.report = dataset_report(spec, seed)
    return specs, {}


def write_dataset(out: str | Path, n: int, size: int = 256, layout: str = "chexpert", seed: int = 0,
                  patients: int | None = None, workers: int | None = None, reports: str = "phantom",
                  subgroup_effects: Sequence[SubgroupEffect] = ()) -> Path:
    """Write ``n`` phantom frontal radiographs in ``layout`` under ``out``; returns ``out``.

    ``reports="iu"`` pairs real IU report texts with phantoms drawn from their findings (MIMIC layout; one patient
    per report, ``patients`` unused; see :mod:`cxrl.data.phantom.iu_pairs`). Deterministic for a given ``seed``
    whatever ``workers`` (default: all cores, at most 8). ``subgroup_effects`` plant findings that are drawn less
    often in one subgroup; they are listed, with how many images each left undrawn, in
    ``phantom_truth/manifest.json``.
    """
    if layout not in LAYOUTS:
        raise ConfigError(f"phantom layout {layout!r}: expected one of {', '.join(LAYOUTS)}")
    if n < 1 or size < 32:
        raise ConfigError(f"phantom needs n >= 1 and size >= 32 (got n={n}, size={size})")
    root = Path(out).expanduser().resolve()
    if root.exists() and any(root.iterdir()):
        raise DataError(f"{root} is not empty; give a new --out folder")
    specs, extra = _plan(n, seed, patients, layout, reports)
    (root / "phantom_truth").mkdir(parents=True, exist_ok=True)
    mimic = layout == "mimic"
    ids = _mimic_ids(specs, seed) if mimic else None
    paths = _mimic_paths(*ids) if mimic else _chexpert_paths(specs)
    jobs = [Job(s, p, hidden_findings(s, subgroup_effects, seed)) for s, p in zip(specs, paths, strict=True)]
    workers = min(os.cpu_count() or 1, 8) if workers is None else workers
    drawn = _render_all(jobs, root, size, seed, mimic, workers)
    if mimic:
        _mimic_tables(root, specs, ids, size, seed)
        _write_reports(root, specs, paths)
    else:
        _chexpert_csvs(root, specs, paths)
    meta = {"layout": layout, "n": n, "size": size, "seed": seed, **extra}
    if subgroup_effects:
        meta["subgroup_effects"] = [{**asdict(e), "n_undrawn": sum(_undrawn_by(e, j) for j in jobs)}
                                    for e in subgroup_effects]
    _write_truth(root, jobs, drawn, meta)
    log.info("wrote %d phantom images (%s layout, %s reports) to %s", n, layout, reports, root)
    return root
