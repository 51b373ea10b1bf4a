"""``cxrl prepare``: read every image of a dataset once into the cache (see :mod:`cxrl.data.cache`).

Each image is decoded (:mod:`cxrl.data.imageio`), resized with its aspect ratio kept (cv2 ``INTER_AREA``)
and letterboxed into ``size x size`` with 0, optionally histogram-equalized or CLAHE'd, and stored as uint8.

Workers write straight into one pre-allocated memory-mapped ``images.partial.npy``; the main process logs
each finished chunk (per-row geometry or skip reason) to ``prepare.progress.jsonl`` after the chunk is on
disk. A killed run therefore resumes at the first unlogged chunk, and the final compaction (skipped rows
removed, in order) makes the result byte-identical to an uninterrupted run. ``manifest.json`` is written
last: it exists only beside a complete cache.

With a tokenizer, the complete cache then gets its report tokens (:mod:`cxrl.data.tokens`) in ``tokens/``, listed
in ``manifest["tokens"]``; running again on a complete cache only adds tokens that are missing.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import inspect
import json
import logging
import os
import platform
import shutil
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
from numpy.lib.format import open_memmap
from tqdm.auto import tqdm

from cxrl import __version__
from cxrl.data.cache import IMAGES, MANIFEST, RECORDS, write_manifest
from cxrl.data.imageio import DecodedImage, decode_image
from cxrl.data.records import DATASETS, VIEWS, load_records, parse_reader_options
from cxrl.data.splits import official_or_patient_split
from cxrl.data.workers import worker_context
from cxrl.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

PARTIAL = "images.partial.npy"
PROGRESS = "prepare.progress.jsonl"
CHUNK_SIZE = 64
EQUALIZE = ("none", "hist", "clahe")
CLAHE_CLIP_LIMIT = 2.0
CLAHE_TILES = 8
GEOMETRY = ("orig_height", "orig_width", "scale", "pad_top", "pad_left")
MIMIC_EQUALIZED = "MIMIC-CXR-JPG is already histogram-equalized; not equalizing it again"
MIN_SIDE = 16  # pixels: a shorter source side cannot be a radiograph
MAX_ASPECT = 4.0  # a longer side over this many times the shorter one is a strip, not a radiograph
LOCK_WAIT_S = 10.0  # seconds a prepare waits for a killed one's workers to exit and free the cache folder
TOKENS_DIR, TOKENIZERS_DIR = "tokens", "tokenizers"  # as in cxrl.data.tokens (not imported here: it loads torch)

# A chunk's outcome: per row either [orig_height, orig_width, scale, pad_top, pad_left] or a skip reason.
RowOutcome = list | str


def prepare(
    dataset: str,
    root: str | Path,
    out: str | Path,
    size: int = 256,
    workers: int | None = None,
    equalize: str | None = None,
    *,
    views: Sequence[str] | None = None,
    limit: int | None = None,
    voi_lut: bool = False,
    split_seed: int = 0,
    overwrite: bool = False,
    tokenizer: str | Path | None = None,
    max_length: int = 128,
    vocab_size: int = 4096,
    **reader_options: Any,
) -> Path:
    """Read ``dataset`` under ``root`` (``reader_options`` go to its reader) and build the cache ``out``.

    ``views`` keeps only those canonical views, ``limit`` the first ``limit`` records after that.
    See :func:`prepare_records` for the rest.
    """
    records = load_records(dataset, root, **reader_options)
    reader_skipped = list(records.attrs.get("skipped", []))
    if views is not None:
        unknown = sorted(set(views) - set(VIEWS))
        if unknown:
            raise DataError(f"unknown views {unknown}; expected some of {', '.join(VIEWS)}")
        records = records[records["view"].isin(views)]
    if limit is not None:
        records = records.head(limit)
    source = {
        "dataset": dataset,
        "root": str(Path(root).expanduser().resolve()),
        "reader_options": reader_options,
        "views": list(views) if views is not None else None,
        "limit": limit,
        "reader_skipped": reader_skipped,
    }
    return prepare_records(
        records,
        out,
        size,
        workers,
        equalize,
        source=source,
        voi_lut=voi_lut,
        split_seed=split_seed,
        overwrite=overwrite,
        tokenizer=tokenizer,
        max_length=max_length,
        vocab_size=vocab_size,
    )


def prepare_records(
    records: pd.DataFrame,
    out: str | Path,
    size: int = 256,
    workers: int | None = None,
    equalize: str | None = None,
    source: dict[str, Any] | None = None,
    *,
    voi_lut: bool = False,
    split_seed: int = 0,
    overwrite: bool = False,
    chunk_size: int = CHUNK_SIZE,
    tokenizer: str | Path | None = None,
    max_length: int = 128,
    vocab_size: int = 4096,
) -> Path:
    """Build (or resume, or find up to date) the cache ``out`` from canonical ``records``.

    Rows without a split get a patient-level one (:func:`~cxrl.data.splits.official_or_patient_split`).
    Unreadable images are skipped and listed in the manifest; if none can be read, :class:`DataError`.
    A complete cache of different inputs in ``out`` is only replaced with ``overwrite=True``.
    ``tokenizer`` (a name of :func:`~cxrl.data.tokens.resolve_tokenizer`, e.g. ``wordpiece`` with ``vocab_size``)
    then writes the report tokens of the complete cache, ``max_length`` tokens per report; the records need text.
    """
    if size < 8:
        raise DataError(f"cache size must be at least 8 pixels, found {size}")
    missing = [c for c in ("image_path", "patient_id", "split", "dataset") if c not in records]
    if missing:
        raise DataError(f"records lack column(s) {missing}; build them with cxrl.data.records.finalize_records")
    records = official_or_patient_split(records.reset_index(drop=True), seed=split_seed)
    if records.empty:
        raise DataError("no records to prepare (check the dataset root, --views and --limit)")
    options = {
        "size": int(size),
        "equalize": _equalize_mode(equalize, records),
        "equalize_requested": equalize or "none",
        "voi_lut": bool(voi_lut),
        "split_seed": int(split_seed),
        "chunk_size": int(chunk_size),
    }
    out = Path(out).expanduser().resolve()
    if tokenizer is not None:
        _require_report_text(records, out)
    out.mkdir(parents=True, exist_ok=True)
    job = _fingerprint(records, options)
    with _exclusive(out):
        existing = _complete_job(out)
        if existing == job:
            logger.info("cache %s is up to date", out)
        elif existing is not None and not overwrite:
            raise DataError(
                f"{out} already holds a different complete cache; pass overwrite=True (--overwrite) "
                "or choose another folder"
            )
        else:
            done = _resume(out, job, len(records), options)
            _run_chunks(out, records["image_path"].astype(str).tolist(), done, options, _worker_count(workers))
            _finalize(out, records, done, options, source or {}, job)
        if tokenizer is not None:
            _add_tokens(out, tokenizer, max_length, vocab_size)
    return out


def _require_report_text(records: pd.DataFrame, out: Path) -> None:
    """Refuse a tokenizer for records without any report text, before a single image is decoded."""
    from cxrl.data.tokens import report_texts

    try:
        has_text = bool(report_texts(records).notna().any())
    except DataError:  # none of the report columns
        has_text = False
    if not has_text:
        raise ConfigError(
            f"cache {out}: a tokenizer needs report text, but no record has any (findings, impression, report_text); "
            "for MIMIC-CXR pass --reader-option reports=true (Python: reports=True)"
        )


def _add_tokens(out: Path, tokenizer: str | Path, max_length: int, vocab_size: int) -> None:
    """Tokenize the complete cache's reports (reused when already done) and list the folder in its manifest."""
    from cxrl.data.tokens import resolve_tokenizer, tokenize_reports

    folder = tokenize_reports(out, resolve_tokenizer(out, tokenizer, vocab_size), max_length)
    manifest = json.loads((out / MANIFEST).read_text())
    if folder.name not in manifest.get("tokens", []):
        manifest["tokens"] = sorted({*manifest.get("tokens", []), folder.name})
        write_manifest(out, manifest)


def to_cache_image(decoded: DecodedImage, size: int, equalize: str = "none") -> tuple[np.ndarray, list]:
    """Letterbox ``decoded`` into a ``size x size`` uint8 image; returns it and its geometry (see ``GEOMETRY``).

    The longer side becomes ``size``; the content is centred and padded with 0. A source pixel ``(x, y)``
    lands at ``(x * scale + pad_left, y * scale + pad_top)``.
    """
    height, width = decoded.height, decoded.width
    scale = size / max(height, width)
    new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
    pixels = decoded.pixels
    shrinking = new_h <= pixels.shape[0] and new_w <= pixels.shape[1]
    resized = cv2.resize(pixels, (new_w, new_h), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)
    content = _equalized(np.clip(np.rint(resized * 255), 0, 255).astype(np.uint8), equalize)
    top, left = (size - new_h) // 2, (size - new_w) // 2
    canvas = np.zeros((size, size), dtype=np.uint8)
    canvas[top : top + new_h, left : left + new_w] = content
    return canvas, [height, width, scale, top, left]


def check_geometry(decoded: DecodedImage, path: str) -> None:
    """Refuse a source too small (a side under ``MIN_SIDE``) or too elongated (over ``MAX_ASPECT``:1) to letterbox.

    The message names the problem, not the size: a DICOM's size is a header value, and none reaches a log.
    """
    short, long = sorted((decoded.height, decoded.width))
    if long > MAX_ASPECT * short:
        raise DataError(f"{path}: extreme aspect ratio (over {MAX_ASPECT:g}:1), not a radiograph")
    if short < MIN_SIDE:
        raise DataError(f"{path}: image too small to be a radiograph (a side under {MIN_SIDE} pixels)")


def _equalized(image: np.ndarray, mode: str) -> np.ndarray:
    if mode == "hist":
        return cv2.equalizeHist(image)
    if mode == "clahe":
        return cv2.createCLAHE(clipLimit=CLAHE_CLIP_LIMIT, tileGridSize=(CLAHE_TILES, CLAHE_TILES)).apply(image)
    return image


def _equalize_mode(equalize: str | None, records: pd.DataFrame) -> str:
    mode = equalize or "none"
    if mode not in EQUALIZE:
        raise DataError(f"equalize must be one of {', '.join(EQUALIZE)}, found {equalize!r}")
    if mode != "none" and (records["dataset"] == "mimic").any():
        logger.warning(MIMIC_EQUALIZED)
        return "none"
    return mode


@contextlib.contextmanager
def _exclusive(out: Path) -> Iterator[None]:
    """Hold an advisory lock on the cache folder, so two prepares never write one cache (freed if killed).

    Forked workers share the lock, so a killed prepare frees it only once its workers have exited too: a rerun
    waits up to ``LOCK_WAIT_S`` seconds for that before it calls the folder busy.
    """
    fd = os.open(out, os.O_RDONLY)
    try:
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError as e:
                if time.monotonic() >= deadline:
                    raise DataError(
                        f"another `cxrl prepare` is writing {out}; wait for it or choose another folder"
                    ) from e
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)


def _worker_count(workers: int | None) -> int:
    if workers is not None:
        return max(0, int(workers))
    return min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def _fingerprint(records: pd.DataFrame, options: dict[str, Any]) -> str:
    """Identifies a job: the exact records (order included) and the options that shape the bytes written."""
    digest = hashlib.sha256(json.dumps(options, sort_keys=True).encode())
    digest.update(",".join(map(str, records.columns)).encode())
    hashable = records.astype({c: str for c in records.columns if records[c].dtype == object})
    digest.update(pd.util.hash_pandas_object(hashable, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def _complete_job(out: Path) -> str | None:
    """The job id of a complete cache in ``out``, or None."""
    try:
        manifest = json.loads((out / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    complete = manifest.get("complete") and (out / IMAGES).is_file() and (out / RECORDS).is_file()
    return manifest.get("job", "") if complete else None


def _resume(out: Path, job: str, count: int, options: dict[str, Any]) -> dict[int, list[RowOutcome]]:
    """Chunks already done by an interrupted run of the same job, or a fresh start (returns {})."""
    done = _read_progress(out / PROGRESS, job)
    if done is not None and ((out / PARTIAL).is_file() or sum(map(len, done.values())) == count):
        logger.info("resuming %s: %d of %d images already done", out, sum(map(len, done.values())), count)
        return done
    for name in (MANIFEST, PROGRESS, PARTIAL, IMAGES, RECORDS):
        (out / name).unlink(missing_ok=True)
    for name in (TOKENS_DIR, TOKENIZERS_DIR):  # text derived from the cache being replaced
        shutil.rmtree(out / name, ignore_errors=True)
    open_memmap(out / PARTIAL, mode="w+", dtype=np.uint8, shape=(count, options["size"], options["size"])).flush()
    _append_line(out / PROGRESS, {"job": job})
    return {}


def _read_progress(path: Path, job: str) -> dict[int, list[RowOutcome]] | None:
    """Logged chunks of ``job`` (a torn last line is ignored), or None if the log is absent or another job's."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    entries = []
    for line in lines:
        try:
            entries.append(json.loads(line))
        except ValueError:
            break
    if not entries or entries[0].get("job") != job:
        return None
    return {entry["start"]: entry["rows"] for entry in entries[1:]}


def _append_line(path: Path, entry: dict[str, Any]) -> None:
    with path.open("a") as f:
        f.write(json.dumps(entry) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _run_chunks(
    out: Path, paths: list[str], done: dict[int, list[RowOutcome]], options: dict[str, Any], workers: int
) -> None:
    step = options["chunk_size"]
    tasks = [(s, paths[s : s + step], options) for s in range(0, len(paths), step) if s not in done]
    if not tasks:
        return
    with tqdm(
        total=len(paths),
        initial=len(paths) - sum(len(t[1]) for t in tasks),
        unit="img",
        desc=f"prepare {out.name}",
        dynamic_ncols=True,
    ) as bar:
        for start, rows in _chunk_results(out / PARTIAL, tasks, workers):
            _append_line(out / PROGRESS, {"start": start, "rows": rows})
            done[start] = rows
            bar.update(len(rows))


def _chunk_results(partial: Path, tasks: list[tuple], workers: int) -> Iterator[tuple[int, list[RowOutcome]]]:
    """``(start, outcomes)`` per task in task order, each yielded only once its pixels are flushed to disk."""
    context = worker_context() if workers > 1 and len(tasks) > 1 else None
    if context is None:
        images = np.load(partial, mmap_mode="r+")
        yield from (_write_chunk(images, *task) for task in tasks)
        return
    pool = ProcessPoolExecutor(min(workers, len(tasks)), context, _open_partial, (str(partial),))
    try:
        yield from pool.map(_pool_chunk, tasks)
    except BrokenProcessPool as e:
        raise DataError(
            "a prepare worker died (crashed decoder or out of memory?); rerun to resume, "
            "with --workers 0 to see which file"
        ) from e
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


_POOL_IMAGES: np.ndarray | None = None


def _open_partial(partial: str) -> None:
    """Pool initializer: map the image store once per worker."""
    global _POOL_IMAGES
    _POOL_IMAGES = np.load(partial, mmap_mode="r+")


def _pool_chunk(task: tuple) -> tuple[int, list[RowOutcome]]:
    assert _POOL_IMAGES is not None, "pool worker started without its memory map"
    return _write_chunk(_POOL_IMAGES, *task)


def _write_chunk(
    images: np.ndarray, start: int, paths: Iterable[str], options: dict[str, Any]
) -> tuple[int, list[RowOutcome]]:
    """Decode, letterbox and store rows ``start...``; unreadable rows are zeroed and get their reason."""
    size = options["size"]
    outcomes: list[RowOutcome] = []
    for row, path in enumerate(paths, start):
        try:
            decoded = decode_image(path, voi_lut=options["voi_lut"], reduce_to=size)
            check_geometry(decoded, path)
            images[row], geometry = to_cache_image(decoded, size, options["equalize"])
            outcomes.append(geometry)
        except DataError as e:
            images[row] = 0
            outcomes.append(str(e))
    images.flush()
    return start, outcomes


def _finalize(
    out: Path,
    records: pd.DataFrame,
    done: dict[int, list[RowOutcome]],
    options: dict[str, Any],
    source: dict[str, Any],
    job: str,
) -> None:
    outcomes = [row for start in sorted(done) for row in done[start]]
    kept = np.asarray([i for i, row in enumerate(outcomes) if isinstance(row, list)], dtype=np.int64)
    skipped = [
        {"row": i, "image_path": str(records.at[i, "image_path"]), "reason": row}
        for i, row in enumerate(outcomes)
        if isinstance(row, str)
    ]
    if len(kept) == 0:
        reasons = "; ".join(s["reason"] for s in skipped[:3])
        raise DataError(f"none of the {len(outcomes)} images could be read, e.g. {reasons}")
    _compact_images(out, kept, len(outcomes), options["size"])
    table = records.iloc[kept].reset_index(drop=True)
    table["cache_index"] = np.arange(len(kept), dtype=np.int64)
    geometry = pd.DataFrame([outcomes[i] for i in kept], columns=list(GEOMETRY))
    for column in GEOMETRY:
        table[column] = geometry[column].astype("float64" if column == "scale" else "int64")
    table.to_parquet(out / (RECORDS + ".tmp"), index=False)
    os.replace(out / (RECORDS + ".tmp"), out / RECORDS)
    write_manifest(out, _manifest(records, kept, skipped, options, source, job))
    (out / PROGRESS).unlink(missing_ok=True)
    logger.debug("cache %s: %d images at %d px, %d skipped", out, len(kept), options["size"], len(skipped))


def _compact_images(out: Path, kept: np.ndarray, total: int, size: int, block: int = 1024) -> None:
    """Turn the partial memmap into ``images.npy`` holding only ``kept`` rows, in order (idempotent)."""
    partial = out / PARTIAL
    if not partial.is_file():
        found = np.load(out / IMAGES, mmap_mode="r").shape if (out / IMAGES).is_file() else None
        if found != (len(kept), size, size):
            raise DataError(f"{out}: interrupted prepare left no image store; delete the folder and run again")
        return
    if len(kept) == total:
        os.replace(partial, out / IMAGES)
        return
    source = np.load(partial, mmap_mode="r")
    target = open_memmap(out / (IMAGES + ".tmp"), mode="w+", dtype=np.uint8, shape=(len(kept), size, size))
    for begin in range(0, len(kept), block):
        target[begin : begin + block] = source[kept[begin : begin + block]]
    target.flush()
    del source, target
    os.replace(out / (IMAGES + ".tmp"), out / IMAGES)
    partial.unlink()


def _manifest(
    records: pd.DataFrame,
    kept: np.ndarray,
    skipped: list[dict],
    options: dict[str, Any],
    source: dict[str, Any],
    job: str,
) -> dict[str, Any]:
    import PIL
    import pydicom

    return {
        "dataset": source.get("dataset") or ",".join(sorted(records["dataset"].astype(str).unique())),
        "root": source.get("root"),
        "source": source,
        "options": options,
        "pixels": "uint8, 0 = black (air); aspect kept, letterboxed with 0",
        "versions": {
            "cxrl": __version__,
            "python": platform.python_version(),
            "numpy": np.__version__,
            "pandas": pd.__version__,
            "opencv": cv2.__version__,
            "pillow": PIL.__version__,
            "pydicom": pydicom.__version__,
        },
        "counts": {
            "records": len(records),
            "images": len(kept),
            "skipped": len(skipped),
            "splits": records.iloc[kept]["split"].value_counts().to_dict(),
        },
        "skipped": skipped,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "job": job,
        "count": len(kept),
        "size": options["size"],
        "complete": True,
    }


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Register ``cxrl prepare``."""
    p = subparsers.add_parser(
        "prepare",
        help="read a dataset and build the preprocessed image cache",
        description="Read every image once into a letterboxed uint8 memmap cache; resumable. With --tokenizer, "
        "the reports are then tokenized once into CACHE/tokens/ (needs report text: --reader-option reports=true "
        "for mimic); running again on a complete cache only adds the tokens.",
    )
    p.add_argument("dataset", choices=sorted(DATASETS), help="dataset layout under --root")
    p.add_argument("--root", required=True, type=Path, help="the dataset folder as distributed")
    p.add_argument("--out", required=True, type=Path, help="cache folder to write (resumed if interrupted)")
    p.add_argument("--size", type=int, default=256, help="side of the square cache images (default 256)")
    p.add_argument("--workers", type=int, default=None, help="decoding processes (default min(4, CPUs))")
    p.add_argument("--equalize", choices=EQUALIZE, default="none", help="histogram equalization (default none)")
    p.add_argument("--limit", type=int, default=None, help="keep only the first N records")
    p.add_argument(
        "--views",
        type=lambda s: [v.strip().upper() for v in s.split(",") if v.strip()],
        default=None,
        help=f"comma-separated views to keep, from {','.join(VIEWS)}",
    )
    p.add_argument("--voi-lut", action="store_true", help="apply the DICOM VOI LUT / window")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the patient split for rows without one")
    p.add_argument("--overwrite", action="store_true", help="replace a different complete cache in --out")
    p.add_argument(
        "--reader-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        type=_key_value,
        help="an option of the dataset reader, typed by its signature, e.g. reports=true, labeler=negbio or "
        "labeler=cxrl (mimic; cxrl labels each report with cxrl's rule labeler, needs reports=true), "
        "extension=.png (rsna), version=9B or leakage=keep (covidx); repeatable",
    )
    text = p.add_argument_group("report tokens (image-text pre-training)")
    text.add_argument(
        "--tokenizer",
        default=None,
        metavar="NAME",
        help="tokenize the reports once into CACHE/tokens/: wordpiece (trained on this cache's train reports), "
        "minilm, hf:NAME_OR_FOLDER or a tokenizer folder",
    )
    text.add_argument(
        "--max-length", type=int, default=128, metavar="N", help="tokens per report, longer ones cut (default 128)"
    )
    text.add_argument(
        "--vocab-size", type=int, default=4096, metavar="N", help="vocabulary of --tokenizer wordpiece (default 4096)"
    )
    p.set_defaults(func=_run_cli)


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, found {text!r}")
    return key.strip(), value.strip()


def _run_cli(args: argparse.Namespace) -> int:
    reader_options = parse_reader_options(args.dataset, args.reader_option)
    clashing = sorted(set(reader_options) & set(inspect.signature(prepare).parameters))
    if clashing:
        raise ConfigError(f"--reader-option {', '.join(clashing)}: use prepare's own --{clashing[0]} instead")
    out = prepare(
        args.dataset,
        args.root,
        args.out,
        size=args.size,
        workers=args.workers,
        equalize=args.equalize,
        views=args.views,
        limit=args.limit,
        voi_lut=args.voi_lut,
        split_seed=args.split_seed,
        overwrite=args.overwrite,
        tokenizer=args.tokenizer,
        max_length=args.max_length,
        vocab_size=args.vocab_size,
        **reader_options,
    )
    print(summary(json.loads((out / MANIFEST).read_text()), out))
    return 0


def summary(manifest: dict[str, Any], out: Path, show: int = 10) -> str:
    """What prepare did, for the console: images kept, CSV rows the reader skipped, images that failed, tokens.

    CSV rows are named ``file:line`` with the line an editor shows (1-based, the header is line 1).
    """
    rows, images = manifest["source"].get("reader_skipped", []), [e["reason"] for e in manifest["skipped"]]
    lines = [f"cache {out}: {manifest['counts']['images']} images at {manifest['size']} px; skipped "
             f"{len(rows)} source row(s), {len(images)} image(s)"]
    listed = [f"  skipped {entry}" for entry in rows] + [f"  skipped {reason}" for reason in images]
    lines += listed[:show]
    if len(listed) > show:
        lines.append(f"  ... {len(listed) - show} more listed in {out / MANIFEST} (source.reader_skipped, skipped)")
    lines += [f"  report tokens: {out / TOKENS_DIR / name}" for name in manifest.get("tokens", [])]
    return "\n".join(lines)
