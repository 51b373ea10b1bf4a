"""``--image-size 0`` is refused, not read as "the default size"."""

from __future__ import annotations

from cxrl.cli import main


def test_image_size_zero_is_refused(toy_cache, tmp_path, capsys):
    code = main(["evaluate", "--encoder", "random", "--backbone", "tiny_cnn", "--data", str(toy_cache.path),
                 "--image-size", "0", "--fractions", "1", "--seeds", "1", "--out", str(tmp_path / "eval")])  # fmt: skip
    assert code == 1 and "image_size: expected a positive number of pixels" in capsys.readouterr().err
    assert not (tmp_path / "eval" / "metrics.json").exists()
