"""Every method pre-trains on a phantom cache through the CLI and exports an encoder the evaluators can load."""

import pytest

from cxrl.cli import main
from cxrl.data.phantom import write_dataset
from cxrl.data.prepare import prepare
from cxrl.methods import METHODS
from cxrl.models import load_encoder

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


@pytest.fixture(scope="module")
def phantom_cache(tmp_path_factory):
    """MIMIC layout with its reports, so that image-report methods (ConVIRT) run too."""
    root = write_dataset(tmp_path_factory.mktemp("phantom"), n=64, size=64, layout="mimic", seed=6, workers=1)
    return prepare("mimic", root, tmp_path_factory.mktemp("cache"), size=32, workers=1, reports=True)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_method_pretrains_on_phantom_from_the_cli(phantom_cache, tmp_path, method):
    run = tmp_path / method
    argv = ["pretrain", method, "--data", str(phantom_cache), "--out", str(run), "max_steps=2",
            "backbone=tiny_cnn", "image_size=32", "batch_size=16", "num_workers=0", "progress_bar=false",
            "optimizer=adamw", "lr=1e-3", "warmup_epochs=0"]
    assert main(argv) == 0
    encoder, meta = load_encoder(run)
    assert (meta["method"], meta["backbone"], meta["image_size"]) == (method, "tiny_cnn", 32)
    assert (run / "config.yaml").is_file() and (run / "checkpoints" / "last.ckpt").is_file()
