"""``cxrl prepare``: letterboxing, bad files skipped and listed, equalization, resume after a kill, the CLI."""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from test_imageio import write_dicom

from cxrl.cli import main as cli_main
from cxrl.data import prepare as prepare_module
from cxrl.data.cache import open_cache
from cxrl.data.imageio import DecodedImage
from cxrl.data.labels import CHEXPERT_PATHOLOGIES
from cxrl.data.prepare import MIMIC_EQUALIZED, prepare, prepare_records, to_cache_image
from cxrl.data.records import finalize_records
from cxrl.errors import DataError

HEADER = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *CHEXPERT_PATHOLOGIES]  # the real train.csv header


def chexpert_folder(root: Path, files: dict[str, callable], seed: int = 0) -> Path:
    """A CheXpert-layout train.csv (real header) listing ``files``: name -> writer(path) (None: leave missing)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, (name, write) in enumerate(files.items()):
        relative = Path("train") / f"patient{i // 2 + 1:05d}" / "study1" / name
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        if write is not None:
            write(root / relative)
        labels = rng.choice(["1.0", "0.0", "-1.0", ""], size=len(HEADER) - 6).tolist()
        rows.append([f"CheXpert-v1.0-small/{relative}", "Female", "60", "Frontal", ("PA", "AP")[i % 2], "", *labels])
    pd.DataFrame(rows, columns=HEADER).to_csv(root / "train.csv", index=False)
    return root


def gray_jpeg(value: int, shape=(48, 40)):
    return lambda p: Image.fromarray(np.full(shape, value, np.uint8)).save(p, quality=95)


def noisy_jpeg(seed: int, shape=(96, 80)):
    return lambda p: Image.fromarray(np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)).save(p)


def truncated_jpeg(p: Path) -> None:
    noisy_jpeg(99)(p)
    p.write_bytes(p.read_bytes()[:300])


@pytest.fixture
def mixed_root(tmp_path) -> Path:
    files = {
        "view1_frontal.jpg": gray_jpeg(200, shape=(20, 40)),  # landscape: padded top and bottom
        "view2_frontal.jpg": noisy_jpeg(1),
        "view1_frontal.png": lambda p: Image.fromarray(np.full((30, 30), 65535 // 4, np.uint16)).save(p),
        "view2_frontal.dcm": lambda p: write_dicom(p, np.full((30, 30), 1023, np.uint16), photometric="MONOCHROME1"),
        "view3_frontal.jpg": lambda p: p.write_bytes(b""),
        "view4_frontal.jpg": truncated_jpeg,
        "view5_frontal.jpg": lambda p: p.write_bytes(b"corrupt" * 50),
        "view6_frontal.jpg": None,
        "view7_frontal.jpg": noisy_jpeg(2),
    }
    return chexpert_folder(tmp_path / "chexpert", files)


def test_prepare_reads_good_files_and_lists_bad_ones(mixed_root, tmp_path):
    cache = open_cache(prepare("chexpert", mixed_root, tmp_path / "cache", size=32, workers=0))
    assert cache.images.shape == (5, 32, 32) and cache.images.dtype == np.uint8
    rec = cache.records
    assert rec["cache_index"].tolist() == list(range(5))
    assert [Path(p).name for p in rec["image_path"]] == [
        "view1_frontal.jpg", "view2_frontal.jpg", "view1_frontal.png", "view2_frontal.dcm", "view7_frontal.jpg"
    ]  # fmt: skip
    assert rec["split"].eq("train").all()
    assert (rec[list(CHEXPERT_PATHOLOGIES)] == -1).any().any()  # uncertain labels kept by default
    landscape = cache.images[0]
    assert rec.loc[0, ["orig_height", "orig_width", "pad_top", "pad_left"]].tolist() == [20, 40, 8, 0]
    assert rec.loc[0, "scale"] == pytest.approx(0.8)
    assert landscape[:8].max() == 0 and landscape[24:].max() == 0 and abs(int(landscape[8:24].mean()) - 200) <= 2
    assert abs(int(cache.images[2].mean()) - 64) <= 1  # 16-bit PNG at a quarter of full scale
    assert abs(int(cache.images[3].mean()) - 191) <= 1  # MONOCHROME1 12-bit 1023 -> 1 - 1023/4095
    manifest = cache.manifest
    assert manifest["complete"] and manifest["counts"] == {
        "records": 9, "images": 5, "skipped": 4, "splits": {"train": 5}
    }  # fmt: skip
    reasons = {Path(s["image_path"]).name: s["reason"] for s in manifest["skipped"]}
    assert set(reasons) == {"view3_frontal.jpg", "view4_frontal.jpg", "view5_frontal.jpg", "view6_frontal.jpg"}
    assert "empty" in reasons["view3_frontal.jpg"] and "not found" in reasons["view6_frontal.jpg"]
    assert all(name in reason for name, reason in reasons.items())
    assert manifest["dataset"] == "chexpert" and manifest["options"]["size"] == 32
    assert not (cache.path / prepare_module.PROGRESS).exists() and not (cache.path / prepare_module.PARTIAL).exists()


def test_rows_the_reader_skipped_are_listed_in_the_manifest(mixed_root, tmp_path):
    with (mixed_root / "train.csv").open("a") as f:
        f.write("CheXpert-v1.0-small/train/not-a-patient.jpg,Male,50,Frontal,PA" + "," * 14 + "\n")
    manifest = open_cache(prepare("chexpert", mixed_root, tmp_path / "cache", size=16, workers=0)).manifest
    assert len(manifest["source"]["reader_skipped"]) == 1 and "not-a-patient" in manifest["source"]["reader_skipped"][0]


def test_no_dicom_header_value_reaches_the_cache(mixed_root, tmp_path):
    out = prepare("chexpert", mixed_root, tmp_path / "cache", size=32, workers=0)
    for name in ("records.parquet", "manifest.json", "images.npy"):
        assert b"SECRET" not in (out / name).read_bytes()


def test_letterbox_geometry_maps_source_pixels():
    image = np.zeros((300, 200), np.float32)
    image[150:160, 40:50] = 1.0  # a bright square centred at (x, y) = (44.5, 154.5)
    canvas, (height, width, scale, top, left) = to_cache_image(DecodedImage(image, 300, 200), 60)
    assert (height, width, top, left) == (300, 200, 0, 10) and scale == pytest.approx(0.2)
    y, x = np.unravel_index(np.argmax(canvas), canvas.shape)
    assert abs(x - (44.5 * scale + left)) <= 1.5 and abs(y - (154.5 * scale + top)) <= 1.5


def test_records_must_be_canonical(tmp_path):
    with pytest.raises(DataError, match=r"lack column.*patient_id"):
        prepare_records(pd.DataFrame({"image_path": ["/a.png"]}), tmp_path / "c")


def test_every_image_unreadable_is_an_error(tmp_path):
    root = chexpert_folder(
        tmp_path / "bad", {"view1_frontal.jpg": None, "view2_frontal.jpg": lambda p: p.write_text("")}
    )
    with pytest.raises(DataError, match="none of the 2 images"):
        prepare("chexpert", root, tmp_path / "cache", size=16, workers=0)


def noisy_records(root: Path, n: int, dataset: str = "chexpert", shape=(64, 48)) -> pd.DataFrame:
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        paths.append(root / f"{i}.jpg")
        if i % 7 != 3:  # every seventh image is missing
            noisy_jpeg(i, shape)(paths[-1])
    frame = pd.DataFrame({"image_path": list(map(str, paths)), "patient_id": [f"p{i // 3}" for i in range(n)]})
    frame["Edema"] = (np.arange(n) % 2).astype("float32")
    return finalize_records(frame, dataset)


def cache_bytes(path: Path) -> tuple[bytes, bytes]:
    return (path / "images.npy").read_bytes(), (path / "records.parquet").read_bytes()


def test_interrupted_prepare_resumes_to_identical_bytes(tmp_path, monkeypatch):
    records = noisy_records(tmp_path / "src", 23)
    reference = prepare_records(records, tmp_path / "reference", size=24, workers=2, chunk_size=4)

    real_write_chunk, calls, crash = prepare_module._write_chunk, [], {"at": 3}

    def write_chunk_or_crash(*args):
        calls.append(args[1])
        if len(calls) == crash["at"]:
            raise KeyboardInterrupt
        return real_write_chunk(*args)

    monkeypatch.setattr(prepare_module, "_write_chunk", write_chunk_or_crash)
    with pytest.raises(KeyboardInterrupt):
        prepare_records(records, tmp_path / "resumed", size=24, workers=0, chunk_size=4)
    assert not (tmp_path / "resumed" / "manifest.json").exists()  # present only beside a complete cache
    with pytest.raises(DataError, match="complete"):
        open_cache(tmp_path / "resumed")
    calls.clear()
    crash["at"] = None
    prepare_records(records, tmp_path / "resumed", size=24, workers=0, chunk_size=4)
    assert calls[0] == 8  # the two logged chunks were not redone
    assert cache_bytes(tmp_path / "resumed") == cache_bytes(reference)
    assert len(open_cache(reference)) == 23 - 3


@pytest.mark.slow
def test_killed_prepare_resumes_to_identical_bytes(tmp_path, caplog):
    records = noisy_records(tmp_path / "src", 120, shape=(700, 600))
    records.to_parquet(tmp_path / "records.parquet")
    script = (
        "import sys, pandas as pd; from cxrl.data.prepare import prepare_records; "
        "prepare_records(pd.read_parquet(sys.argv[1]), sys.argv[2], size=32, workers=2, chunk_size=4)"
    )
    out = tmp_path / "killed"
    child = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path / "records.parquet"), str(out)],
        start_new_session=True,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and _logged_chunks(out) < 4 and child.poll() is None:
            time.sleep(0.02)
        assert child.poll() is None, "prepare finished before it could be killed"
        os.killpg(child.pid, signal.SIGKILL)
    finally:
        child.wait()
    assert 4 <= _logged_chunks(out) < 30
    with caplog.at_level(logging.INFO, logger="cxrl.data.prepare"):
        prepare_records(records, out, size=32, workers=2, chunk_size=4)
    assert "already done" in caplog.text  # resumed, not restarted
    reference = prepare_records(records, tmp_path / "reference", size=32, workers=0, chunk_size=4)
    assert cache_bytes(out) == cache_bytes(reference)


def _logged_chunks(out: Path) -> int:
    try:
        return len((out / prepare_module.PROGRESS).read_text().splitlines()) - 1
    except OSError:
        return 0


def test_equalization_is_recorded_and_refused_for_mimic(tmp_path, caplog):
    records = noisy_records(tmp_path / "src", 6)
    flat = prepare_records(records, tmp_path / "none", size=24, workers=0)
    equalized = prepare_records(records, tmp_path / "clahe", size=24, workers=0, equalize="clahe")
    assert open_cache(equalized).manifest["options"]["equalize"] == "clahe"
    assert not np.array_equal(open_cache(flat).images, open_cache(equalized).images)
    with caplog.at_level(logging.WARNING, logger="cxrl.data.prepare"):
        mimic = prepare_records(noisy_records(tmp_path / "m", 6, "mimic"), tmp_path / "mimic", size=24, equalize="hist")
    assert MIMIC_EQUALIZED in caplog.text
    assert open_cache(mimic).manifest["options"]["equalize"] == "none"
    assert open_cache(mimic).manifest["options"]["equalize_requested"] == "hist"


def test_rerun_is_a_no_op_and_a_different_cache_needs_overwrite(tmp_path):
    records = noisy_records(tmp_path / "src", 5)
    out = prepare_records(records, tmp_path / "cache", size=16, workers=0)
    stamp = (out / "images.npy").stat().st_mtime_ns
    prepare_records(records, out, size=16, workers=0)
    assert (out / "images.npy").stat().st_mtime_ns == stamp
    with pytest.raises(DataError, match="overwrite"):
        prepare_records(records, out, size=20, workers=0)
    prepare_records(records, out, size=20, workers=0, overwrite=True)
    assert open_cache(out).image_size == 20


def test_a_second_concurrent_prepare_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr("cxrl.data.prepare.LOCK_WAIT_S", 0.3)
    out = tmp_path / "busy"
    out.mkdir()
    fd = os.open(out, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(DataError, match="another"):
            prepare_records(noisy_records(tmp_path / "src", 2), out, size=16, workers=0)
    finally:
        os.close(fd)
    assert len(open_cache(prepare_records(noisy_records(tmp_path / "src", 2), out, size=16, workers=0))) == 2


def test_a_prepare_waits_for_a_lock_freed_soon(tmp_path):
    """A killed prepare's forked workers hold its lock a moment longer; a rerun waits rather than refuse."""
    out = tmp_path / "freed"
    out.mkdir()
    fd = os.open(out, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    release = threading.Timer(0.5, os.close, (fd,))
    release.start()
    try:
        assert len(open_cache(prepare_records(noisy_records(tmp_path / "src", 2), out, size=16, workers=0))) == 2
    finally:
        release.join()


def test_cli_prepare_with_views_and_limit(mixed_root, tmp_path, capsys):
    code = cli_main(["prepare", "chexpert", "--root", str(mixed_root), "--out", str(tmp_path / "c"), "--size", "16",
                     "--workers", "0", "--views", "pa", "--limit", "3"])  # fmt: skip
    assert code == 0
    cache = open_cache(tmp_path / "c")
    assert cache.records["view"].eq("PA").all() and cache.manifest["counts"]["records"] == 3
    assert "images at 16 px" in capsys.readouterr().out
    assert cli_main(["prepare", "chexpert", "--root", str(tmp_path / "nowhere"), "--out", str(tmp_path / "d")]) == 1
    args = ["prepare", "chexpert", "--root", str(mixed_root), "--out", str(tmp_path / "z"), "--workers", "0"]
    assert cli_main([*args, "--size", "16", "--reader-option", "uncertainty=zeros"]) == 0
    zeros = open_cache(tmp_path / "z")
    assert not (zeros.records[list(CHEXPERT_PATHOLOGIES)] == -1).any().any()
    assert zeros.manifest["source"]["reader_options"] == {"uncertainty": "zeros"}


def test_cache_read_returns_rows_in_requested_order(toy_cache):
    indices = np.array([40, 3, 40, 95, 0])
    np.testing.assert_array_equal(toy_cache.read(indices), np.asarray(toy_cache.images)[indices])
    assert toy_cache.read([]).shape == (0, 64, 64)


@pytest.mark.skipif(sys.platform != "linux", reason="workers inherit the patched function only when forked")
def test_a_dying_worker_is_a_clear_error_and_the_rerun_resumes(tmp_path, monkeypatch):
    records = noisy_records(tmp_path / "src", 12)
    real_write_chunk = prepare_module._write_chunk

    def die_on_second_chunk(images, start, *rest):
        if start == 4:
            os._exit(3)  # a decoder segfault, as the pool sees it
        return real_write_chunk(images, start, *rest)

    monkeypatch.setattr(prepare_module, "_write_chunk", die_on_second_chunk)
    with pytest.raises(DataError, match="worker died"):
        prepare_records(records, tmp_path / "cache", size=16, workers=2, chunk_size=4)
    monkeypatch.undo()
    assert len(open_cache(prepare_records(records, tmp_path / "cache", size=16, workers=2, chunk_size=4))) == 10


@pytest.mark.slow
def test_workers_start_cleanly_after_the_parent_used_cv2_threads(tmp_path):
    """Regression: a forked worker touching cv2's inherited thread pool used to deadlock."""
    records = noisy_records(tmp_path / "src", 16)
    records.to_parquet(tmp_path / "records.parquet")
    script = (
        "import sys, cv2, numpy as np, pandas as pd; from cxrl.data.prepare import prepare_records; "
        "big = np.random.rand(2000, 2000).astype(np.float32); "
        "[cv2.GaussianBlur(cv2.resize(big, (999, 999), interpolation=cv2.INTER_AREA), (9, 9), 2) for _ in range(3)]; "
        "prepare_records(pd.read_parquet(sys.argv[1]), sys.argv[2], size=16, workers=2, chunk_size=4)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "records.parquet"), str(tmp_path / "cache")],
        timeout=120,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(open_cache(tmp_path / "cache")) == 14


def test_voi_lut_skips_a_dicom_with_a_non_numeric_window_and_goes_on(tmp_path):
    from test_imageio import dicom_with_bad_number

    files = {
        "view1_frontal.jpg": noisy_jpeg(1),
        "view2_frontal.dcm": lambda p: dicom_with_bad_number(p, WindowCenter="SECRET4711", WindowWidth="100"),
        "view3_frontal.jpg": noisy_jpeg(2),
    }
    root = chexpert_folder(tmp_path / "chexpert", files)
    cache = open_cache(prepare("chexpert", root, tmp_path / "cache", size=16, workers=0, voi_lut=True))
    assert len(cache) == 2
    [skipped] = cache.manifest["skipped"]
    assert skipped["image_path"].endswith("view2_frontal.dcm") and "window" in skipped["reason"]
    assert "SECRET" not in skipped["reason"]


def test_a_strip_and_a_speck_are_skipped_with_their_reason(tmp_path):
    files = {
        "view1_frontal.png": lambda p: Image.fromarray(np.full((1, 10000), 128, np.uint8)).save(p),
        "view2_frontal.png": lambda p: Image.fromarray(np.full((8, 8), 128, np.uint8)).save(p),
        "view3_frontal.jpg": noisy_jpeg(3),
    }
    root = chexpert_folder(tmp_path / "chexpert", files)
    cache = open_cache(prepare("chexpert", root, tmp_path / "cache", size=32, workers=0))
    assert len(cache) == 1 and cache.records["image_path"].str.endswith("view3_frontal.jpg").all()
    reasons = {Path(s["image_path"]).name: s["reason"] for s in cache.manifest["skipped"]}
    assert "extreme aspect ratio" in reasons["view1_frontal.png"] and "too small" in reasons["view2_frontal.png"]


def test_cli_summary_counts_and_lists_skipped_csv_rows_by_their_editor_line(mixed_root, tmp_path, capsys):
    with (mixed_root / "train.csv").open("a") as f:  # line 11: the header and 9 rows come first
        f.write("CheXpert-v1.0-small/train/not-a-patient.jpg,Male,50,Frontal,PA" + "," * 14 + "\n")
    assert cli_main(["prepare", "chexpert", "--root", str(mixed_root), "--out", str(tmp_path / "c"), "--size", "16",
                     "--workers", "0"]) == 0  # fmt: skip
    captured = capsys.readouterr()
    assert "skipped 1 source row(s), 4 image(s)" in captured.out
    assert f"skipped {mixed_root / 'train.csv'}:11: Path" in captured.out
    assert "attrs['skipped']" not in captured.out + captured.err and "skipped row" not in captured.out
