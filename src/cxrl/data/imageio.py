"""Read one radiograph from JPEG, PNG (8/16-bit) or DICOM into float32 ``[0, 1]``, 0 = black (air), 1 = white (bone).

Grayscale only: an RGB file whose channels agree is accepted, real colour is refused. DICOM follows the
display pipeline of PS3.4 (stored value -> Modality LUT -> optional VOI LUT / window -> MONOCHROME1
inversion) and is scaled by the nominal range given by *Bits Stored* (or the LUT depth), never by the
dtype. Nothing read from a DICOM header (names, identifiers, dates) leaves this module: errors carry only
the file path and technical attributes.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from cxrl.errors import DataError

# Lossy JPEG rounding may leave a gray RGB image's channels one or two levels apart.
GRAY_TOLERANCE = 2
_PIL_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)
_DECODER_HINTS = {
    "JPEG 2000": "pip install pylibjpeg pylibjpeg-openjpeg",
    "JPEG-LS": "pip install pyjpegls (or pylibjpeg pylibjpeg-libjpeg)",
    "JPEG": "pip install pylibjpeg pylibjpeg-libjpeg",
    "RLE": "pip install pylibjpeg pylibjpeg-rle",
}


@dataclass(frozen=True)
class DecodedImage:
    """Pixels in ``[0, 1]`` (possibly decoded at a reduced scale) and the source's full-resolution size."""

    pixels: np.ndarray
    height: int
    width: int


def read_image(path: str | Path, *, voi_lut: bool = False) -> np.ndarray:
    """Read a JPEG, PNG or DICOM radiograph as a 2-D float32 array in ``[0, 1]`` (0 = air, 1 = bone).

    ``voi_lut`` applies the DICOM VOI LUT or window (ignored for other formats). Raises :class:`DataError`
    naming the file when it is missing, empty, truncated, corrupt, colour, or needs an absent codec.
    """
    return decode_image(path, voi_lut=voi_lut).pixels


def decode_image(path: str | Path, *, voi_lut: bool = False, reduce_to: int | None = None) -> DecodedImage:
    """:func:`read_image` plus the source's full-resolution size.

    ``reduce_to`` lets a JPEG decoder downscale by a power of two in the DCT domain while the longer side stays
    at least ``reduce_to`` pixels: several times faster when building a small cache from large files.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: image file not found")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: image file is empty (0 bytes)")
    if _is_dicom(path):
        pixels = _read_dicom(path, voi_lut)
        return DecodedImage(pixels, *pixels.shape)
    return _read_pil(path, reduce_to)


def _is_dicom(path: Path) -> bool:
    if path.suffix.lower() in (".dcm", ".dicom"):
        return True
    with path.open("rb") as f:
        return f.read(132)[128:] == b"DICM"


def _read_pil(path: Path, reduce_to: int | None) -> DecodedImage:
    try:
        with Image.open(path) as img:
            width, height = img.size
            scale = reduce_to / max(width, height) if reduce_to else 1.0
            if scale < 1 and img.format == "JPEG":
                img.draft(img.mode, (math.ceil(width * scale), math.ceil(height * scale)))
            img.load()
            pixels = _gray_unit(img, path)
    except _PIL_DECODE_ERRORS as e:
        raise DataError(f"{path}: cannot decode image ({type(e).__name__}: {e})") from e
    return DecodedImage(pixels, height, width)


def _gray_unit(img: Image.Image, path: Path) -> np.ndarray:
    """A decoded PIL image as float32 ``[0, 1]``; 16-bit pixels are scaled by the PNG's significant bits
    (``sBIT``) when it declares them, else by 65535."""
    mode = img.mode
    if mode in ("L", "LA"):
        return _unit(np.asarray(img.getchannel(0)), 255)
    if mode == "1":
        return np.asarray(img, dtype=np.float32)
    if mode.startswith("I;16") or mode == "I":
        values = np.asarray(img)
        if values.min() < 0 or values.max() > 65535:
            raise DataError(f"{path}: 32-bit integer pixels outside 0..65535 are not a supported radiograph encoding")
        bits = _png_significant_bits(path) if img.format == "PNG" else None
        return np.minimum(_unit(values, 2 ** (bits or 16) - 1), 1.0)
    if mode == "F":
        raise DataError(f"{path}: floating-point images are not supported; store 8- or 16-bit grayscale")
    rgb = np.asarray(img.convert("RGB")).astype(np.int16)
    spread = np.abs(rgb[..., 1:] - rgb[..., :1]).max()
    if spread > GRAY_TOLERANCE:
        raise DataError(f"{path}: colour image (mode {mode}, channels differ by up to {spread}); expected grayscale")
    return _unit(rgb.mean(axis=2), 255)


def _png_significant_bits(path: Path) -> int | None:
    """The gray sample depth a PNG's ``sBIT`` chunk declares (e.g. 12 for 12-bit data in 16-bit samples)."""
    with path.open("rb") as f:
        f.seek(8)  # signature
        while header := f.read(8):
            if len(header) < 8:
                return None
            length, kind = int.from_bytes(header[:4], "big"), header[4:]
            if kind == b"sBIT":
                bits = f.read(1)
                return bits[0] if bits and 1 <= bits[0] <= 16 else None
            if kind in (b"IDAT", b"IEND"):
                return None
            f.seek(length + 4, os.SEEK_CUR)  # data and CRC
    return None


def _unit(values: np.ndarray, maximum: float) -> np.ndarray:
    return values.astype(np.float32) * np.float32(1 / maximum)


def _read_dicom(path: Path, voi_lut: bool) -> np.ndarray:
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        ds = pydicom.dcmread(path, force=True)
    except (InvalidDicomError, OSError, ValueError, EOFError, KeyError, TypeError) as e:
        # Only the exception type: parser messages can quote header bytes.
        raise DataError(f"{path}: cannot parse DICOM ({type(e).__name__})") from e
    _check_dicom_grayscale(ds, path)
    stored = _dicom_pixels(ds, path)
    try:
        lo, hi = _modality_range(ds)
        values = apply_modality_lut(stored, ds)
        if voi_lut:
            values = apply_voi_lut(values, ds)
            lo, hi = _voi_range(ds, (lo, hi))
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as e:
        raise DataError(
            f"{path}: DICOM rescale, LUT or window attributes are malformed (not numbers, or inconsistent; "
            f"{type(e).__name__})"
        ) from e
    if not hi > lo:
        raise DataError(f"{path}: DICOM intensity range is empty (check RescaleSlope / LUT descriptors)")
    unit = np.clip((values.astype(np.float64) - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)
    return 1.0 - unit if ds.PhotometricInterpretation == "MONOCHROME1" else unit


def _check_dicom_grayscale(ds, path: Path) -> None:
    if "PixelData" not in ds:
        raise DataError(f"{path}: DICOM has no pixel data")
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    if samples != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise DataError(  # the header's value is not echoed: nothing read from a header leaves this module
            f"{path}: colour DICOM ({samples} samples per pixel, photometric interpretation "
            f"{'neither MONOCHROME1 nor MONOCHROME2' if photometric else 'missing'}); expected grayscale"
        )
    if "BitsStored" not in ds:
        raise DataError(f"{path}: DICOM lacks BitsStored, cannot scale intensities")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames != 1:
        raise DataError(f"{path}: DICOM has {frames} frames; expected a single radiograph")


def _dicom_pixels(ds, path: Path) -> np.ndarray:
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    try:
        return ds.pixel_array
    except (RuntimeError, NotImplementedError) as e:
        if syntax is not None and syntax.is_compressed:
            hint = next((v for k, v in _DECODER_HINTS.items() if k in syntax.name), "pip install python-gdcm")
            raise DataError(f"{path}: no installed decoder for {syntax.name} pixel data; {hint}") from e
        raise DataError(f"{path}: cannot decode DICOM pixel data ({type(e).__name__})") from e
    except (ValueError, AttributeError, KeyError, TypeError, EOFError) as e:
        # Only the type: pydicom's messages quote header values (Rows, BitsStored, ...).
        raise DataError(
            f"{path}: DICOM pixel data is truncated or corrupt, or disagrees with the header's image attributes "
            f"({type(e).__name__})"
        ) from e


def _modality_range(ds) -> tuple[float, float]:
    """Nominal output range of the Modality LUT stage (the same range pydicom's windowing maps onto)."""
    if ds.get("ModalityLUTSequence"):
        return 0.0, float(2 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
    bits = int(ds.BitsStored)
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    if "RescaleSlope" in ds and "RescaleIntercept" in ds:
        slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
        lo, hi = sorted((lo * slope + intercept, hi * slope + intercept))
    return float(lo), float(hi)


def _voi_range(ds, modality_range: tuple[float, float]) -> tuple[float, float]:
    """Output range of ``apply_voi_lut``: the VOI LUT's depth, or the modality range for a window."""
    voi = ds.get("VOILUTSequence")
    if voi and voi[0].get("LUTDescriptor") is not None and voi[0].get("LUTData") is not None:
        return 0.0, float(2 ** int(voi[0].LUTDescriptor[2]) - 1)
    return modality_range
