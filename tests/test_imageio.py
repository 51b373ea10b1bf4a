"""Image reading: JPEG/PNG 8/16-bit, gray RGB, DICOM LUTs and photometry, and every way a file can be bad."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian, JPEGLSLossless, SecondaryCaptureImageStorage, generate_uid

from cxrl.data.imageio import decode_image, read_image
from cxrl.errors import DataError

SECRET = "Doe^Jane-SECRET-4711"


def write_dicom(path: Path, stored: np.ndarray, *, bits: int = 12, photometric: str = "MONOCHROME2", **attrs) -> Path:
    """A minimal uncompressed single-frame DICOM holding ``stored`` (uint16 or int16) with PHI-like header values."""
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = attrs.pop("transfer_syntax", ExplicitVRLittleEndian)
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = Dataset()
    ds.file_meta = meta
    ds.PatientName, ds.PatientID, ds.StudyDate = SECRET, SECRET, "20240101"
    ds.Rows, ds.Columns = stored.shape[:2]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, bits, bits - 1
    ds.PixelRepresentation = int(stored.dtype.kind == "i")
    ds.SamplesPerPixel = stored.shape[2] if stored.ndim == 3 else 1
    if ds.SamplesPerPixel > 1:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    for key, value in attrs.items():
        setattr(ds, key, value)
    if "PixelData" not in ds:
        ds.PixelData = stored.astype(stored.dtype.newbyteorder("<")).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture
def gradient() -> np.ndarray:
    return np.tile(np.arange(0, 256, 4, dtype=np.uint8), (48, 1))  # 48 x 64, left dark, right bright


def test_png_8bit_is_scaled_by_255(tmp_path, gradient):
    Image.fromarray(gradient).save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png")
    assert out.dtype == np.float32 and out.shape == (48, 64)
    np.testing.assert_allclose(out, gradient / 255, atol=1e-6)


def test_png_16bit_is_scaled_by_65535(tmp_path):
    values = np.linspace(0, 65535, 40 * 30).astype(np.uint16).reshape(40, 30)
    Image.fromarray(values).save(tmp_path / "a.png")
    assert Image.open(tmp_path / "a.png").mode in ("I;16", "I")
    np.testing.assert_allclose(read_image(tmp_path / "a.png"), values / 65535, atol=1e-6)


def test_png_16bit_with_sbit_is_scaled_by_its_significant_bits(tmp_path):
    values = np.array([[0, 1000], [2048, 4095]], dtype=np.uint16)  # 12-bit data in 16-bit samples
    info = PngInfo()
    info.add(b"sBIT", bytes([12]))
    Image.fromarray(values).save(tmp_path / "a.png", pnginfo=info)
    np.testing.assert_allclose(read_image(tmp_path / "a.png"), values / 4095, atol=1e-6)


def test_jpeg_gray_roundtrip(tmp_path, gradient):
    Image.fromarray(gradient).save(tmp_path / "a.jpg", quality=95)
    assert np.abs(read_image(tmp_path / "a.jpg") - gradient / 255).max() < 0.05


def test_gray_rgb_is_accepted_and_colour_refused(tmp_path, gradient):
    Image.fromarray(np.stack([gradient] * 3, axis=2)).convert("RGBA").save(tmp_path / "gray.png")
    np.testing.assert_allclose(read_image(tmp_path / "gray.png"), gradient / 255, atol=1e-6)
    colour = np.stack([gradient, gradient[:, ::-1], gradient], axis=2)
    Image.fromarray(colour).save(tmp_path / "colour.png")
    with pytest.raises(DataError, match=r"colour\.png.*colour image"):
        read_image(tmp_path / "colour.png")


def test_jpeg_draft_decoding_keeps_full_size_and_enough_pixels(tmp_path):
    Image.fromarray(np.full((1000, 800), 128, np.uint8)).save(tmp_path / "big.jpg")
    decoded = decode_image(tmp_path / "big.jpg", reduce_to=200)
    assert (decoded.height, decoded.width) == (1000, 800)
    assert 200 <= max(decoded.pixels.shape) < 1000


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: None, "not found"),
        (lambda p: p.write_bytes(b""), "empty"),
        (lambda p: p.write_bytes(b"this is not an image at all"), "cannot decode"),
    ],
    ids=["missing", "zero-byte", "garbage"],
)
def test_bad_files_raise_naming_the_file(tmp_path, make, message):
    path = tmp_path / "bad.jpg"
    make(path)
    with pytest.raises(DataError, match=message) as info:
        read_image(path)
    assert str(path) in str(info.value)


def test_truncated_jpeg_raises(tmp_path, gradient):
    Image.fromarray(np.tile(gradient, (4, 4))).save(tmp_path / "full.jpg")
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"cut\.jpg"):
        read_image(tmp_path / "cut.jpg")


def test_real_chest_dicom_is_monochrome1_inverted(rg1_dicom):
    image = read_image(rg1_dicom)
    assert image.shape == (1955, 1841) and image.dtype == np.float32
    assert image.min() >= 0 and image.max() <= 1
    h, w = image.shape
    band = slice(h // 4, 3 * h // 4)
    spine = image[band, w // 2 - w // 20 : w // 2 + w // 20].mean()
    lungs = np.mean([image[band, w // 8 : w // 4].mean(), image[band, 3 * w // 4 : 7 * w // 8].mean()])
    assert spine > lungs + 0.1, (spine, lungs)
    windowed = read_image(rg1_dicom, voi_lut=True)
    assert windowed.shape == image.shape and windowed.min() >= 0 and windowed.max() <= 1


def test_dicom_scaled_by_bits_stored_and_inverted(tmp_path):
    stored = np.array([[0, 1000], [2000, 4095]], dtype=np.uint16)
    mono2 = read_image(write_dicom(tmp_path / "m2.dcm", stored, bits=12))
    np.testing.assert_allclose(mono2, stored / 4095, atol=1e-6)
    mono1 = read_image(write_dicom(tmp_path / "m1.dcm", stored, bits=12, photometric="MONOCHROME1"))
    np.testing.assert_allclose(mono1, 1 - stored / 4095, atol=1e-6)


def test_dicom_modality_lut_and_window(tmp_path):
    stored = np.array([[0, 2048], [2560, 4095]], dtype=np.uint16)
    path = write_dicom(
        tmp_path / "ct.dcm", stored, RescaleSlope=1, RescaleIntercept=-1024, WindowCenter=1024, WindowWidth=2048
    )
    np.testing.assert_allclose(read_image(path), stored / 4095, atol=1e-6)  # rescale shifts value and range alike
    windowed = read_image(path, voi_lut=True)  # window [0, 2048] in modality units = stored 1024..3072
    assert windowed[0, 0] == 0 and windowed[1, 1] == 1
    np.testing.assert_allclose(windowed[0, 1], 0.5, atol=0.01)  # modality 1024, the window centre
    np.testing.assert_allclose(windowed[1, 0], 0.75, atol=0.01)  # modality 1536


def test_dicom_signed_and_sniffed_without_suffix(tmp_path):
    stored = np.array([[-2048, 0], [1, 2047]], dtype=np.int16)
    path = write_dicom(tmp_path / "image.bin", stored, bits=12)
    np.testing.assert_allclose(read_image(path), (stored + 2048) / 4095, atol=1e-6)


def test_colour_dicom_refused(tmp_path):
    rgb = np.zeros((4, 4, 3), dtype=np.uint16)
    with pytest.raises(DataError, match=r"rgb\.dcm.*colour DICOM"):
        read_image(write_dicom(tmp_path / "rgb.dcm", rgb, bits=8, photometric="RGB"))


def test_compressed_dicom_without_plugin_names_the_plugin(tmp_path):
    stored = np.zeros((8, 8), dtype=np.uint16)
    pixel_data = encapsulate([b"\xff\xd8 not a real codestream \xff\xd9"])
    path = write_dicom(tmp_path / "jls.dcm", stored, transfer_syntax=JPEGLSLossless, PixelData=pixel_data)
    with pytest.raises(DataError, match=r"jls\.dcm.*JPEG-LS.*pip install") as info:
        read_image(path)
    assert "SECRET" not in str(info.value)


def test_truncated_dicom_raises_without_leaking_header(tmp_path):
    path = write_dicom(tmp_path / "t.dcm", np.arange(64 * 64, dtype=np.uint16).reshape(64, 64))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 3000])
    with pytest.raises(DataError, match=r"t\.dcm") as info:
        read_image(path)
    assert "SECRET" not in str(info.value) and "Doe" not in str(info.value)
    assert pydicom.dcmread(path, force=True).PatientID == SECRET  # the header was really there


def dicom_with_bad_number(path: Path, **attrs: str) -> Path:
    """A DICOM whose decimal-string attributes ``attrs`` (in tag order) may hold a non-number (pydicom would not
    write one itself)."""
    placeholder = "1234.5678"
    write_dicom(path, np.arange(32 * 32, dtype=np.uint16).reshape(32, 32), **dict.fromkeys(attrs, placeholder))
    data = path.read_bytes()
    for value in attrs.values():
        data = data.replace(f"{placeholder} ".encode(), value.ljust(10).encode(), 1)
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("voi_lut", [True, False])
def test_non_numeric_window_or_rescale_is_a_data_error_without_the_value(tmp_path, voi_lut):
    window = {"WindowCenter": "SECRET4711", "WindowWidth": "100"}
    attrs = window if voi_lut else {"RescaleIntercept": "SECRET4711", "RescaleSlope": "1"}
    path = dicom_with_bad_number(tmp_path / "w.dcm", **attrs)
    with pytest.raises(DataError, match=r"w\.dcm.*malformed") as info:
        read_image(path, voi_lut=voi_lut)
    assert "SECRET" not in str(info.value)


def test_no_dicom_header_value_reaches_an_error(tmp_path):
    stored = np.zeros((16, 16), dtype=np.uint16)
    photometric = write_dicom(tmp_path / "pi.dcm", stored, photometric="SECRET4711")
    rows = write_dicom(tmp_path / "rows.dcm", stored, Rows=4711)  # pydicom quotes the expected byte count
    bits = write_dicom(tmp_path / "bits.dcm", stored)
    ds = pydicom.dcmread(bits)
    ds.BitsStored = 4711  # pydicom quotes the invalid value
    ds.save_as(bits)
    for path in (photometric, rows, bits):
        with pytest.raises(DataError, match=path.name) as info:
            read_image(path)
        assert "4711" not in str(info.value) and "150752" not in str(info.value), str(info.value)
