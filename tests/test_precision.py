"""Mixed precision on the CPU (autocast's bf16 path): views, every method, the monitor, evaluation; precision names."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from engine_support import TINY, encoder_tensors

from cxrl.errors import ConfigError
from cxrl.evaluate.protocol import run_evaluation
from cxrl.methods import METHODS, MethodConfig
from cxrl.models import create_encoder, save_encoder
from cxrl.train import LAST_CKPT, pretrain, resolve_config
from cxrl.transforms import make_view_fn, seeds_for, simclr_views

pytestmark = pytest.mark.usefixtures("one_thread")


def test_views_stay_float32_inside_autocast(toy_cache):
    """Views made inside a bf16 autocast region (as Lightning's training step is) equal the float32 views."""
    images = torch.from_numpy(np.array(toy_cache.images[:16]))
    view_fn = make_view_fn(simclr_views(32))
    plain = view_fn(images, seeds_for(range(16), 0))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = view_fn(images, seeds_for(range(16), 0))
    for p, m in zip(plain, mixed, strict=True):
        assert m.dtype == torch.float32 and torch.equal(p, m)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_pretrains_in_bf16_mixed(toy_report_cache, tmp_path, name, precision="bf16-mixed"):
    """(Lightning runs ``16-mixed`` as bf16 on a CPU, so only a GPU tells float16 apart: scripts/gpu_check.sh.)
    The toy cache with reports: ConVIRT reads them, the image methods ignore them."""
    shared = TINY if METHODS[name].config is MethodConfig else [o for o in TINY if not o.startswith("method.")]
    overrides = [*shared, "max_steps=2", f"precision={precision}", "monitor.enabled=true", "monitor.splits=[train]"]
    if name == "swav":
        overrides.append("method.local_views=2")
    run = pretrain(name, toy_report_cache.path, tmp_path / name, overrides=overrides)
    meta = json.loads((run / "encoder.json").read_text())
    assert meta["steps"] == 2 and np.isfinite(meta["final_loss"])
    assert meta["config"]["precision"] == precision
    metrics = pd.read_csv(run / "logs/csv/version_0/metrics.csv")
    assert metrics["monitor/feat_std"].notna().any()  # the online monitor ran too
    assert {t.dtype for t in encoder_tensors(run).values() if t.is_floating_point()} == {torch.float32}  # mixed


@pytest.mark.parametrize(
    ("given", "canonical"),
    [("32", "32-true"), ("'32'", "32-true"), ("32-true", "32-true"), ("16", "16-mixed"), ("16-mixed", "16-mixed"),
     ("bf16", "bf16-mixed"), ("bf16-mixed", "bf16-mixed")],
)
def test_precision_takes_lightning_values(given, canonical):
    assert resolve_config("simclr", overrides=[f"precision={given}"]).precision == canonical


def test_precision_from_yaml_int(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("precision: 16\n")
    assert resolve_config("simclr", path).precision == "16-mixed"


@pytest.mark.parametrize("bad", ["64", "fp16", "true", "1.5"])
def test_wrong_precision_lists_the_valid_ones(bad):
    with pytest.raises(ConfigError, match=r"'precision': expected one of 32, 32-true, 16, 16-mixed, bf16, bf16-mixed"):
        resolve_config("simclr", overrides=[f"precision={bad}"])


@pytest.mark.slow
@pytest.mark.parametrize(("protocol", "precision"), [("linear", "bf16"), ("finetune", "bf16"), ("finetune", "16")])
def test_evaluation_runs_in_mixed_precision(toy_cache, tmp_path, protocol, precision):
    """cxrl's own autocast (and float16 loss scaling) here, not Lightning's: float16 runs on the CPU too."""
    torch.manual_seed(1)
    save_encoder(tmp_path / "run", create_encoder("tiny_cnn"), {"image_size": 32, "method": "simclr", "config": {}})
    quick = dict(n_bootstrap=20, min_positives=2, embedding="none", device="cpu", epochs=1)
    m = run_evaluation(tmp_path / "run", toy_cache.path, tmp_path / "o", protocol, [1.0], 1, precision=precision,
                       **quick)
    assert m["protocol"]["precision"] == f"{precision}-mixed"
    assert 0 <= m["runs"][0]["macro_auroc"] <= 1


@pytest.mark.slow
def test_compile_is_recorded_and_exports_the_eager_layout(toy_cache, tmp_path, monkeypatch):
    """Dynamo traces the encoders (the ``eager`` backend: Inductor's C++ build takes minutes on a small CPU)."""
    compiled_modules = []
    module_compile = torch.nn.Module.compile

    def traced_eagerly(module, **_):
        compiled_modules.append(type(module).__name__)
        module_compile(module, backend="eager")

    monkeypatch.setattr(torch.nn.Module, "compile", traced_eagerly)
    overrides = [*TINY, "max_steps=2", "monitor.enabled=false"]
    eager = pretrain("byol", toy_cache.path, tmp_path / "eager", overrides=overrides)
    assert compiled_modules == []
    compiled = pretrain("byol", toy_cache.path, tmp_path / "compiled", overrides=[*overrides, "compile=true"])
    assert compiled_modules == ["Encoder", "Encoder"]  # the online encoder and its EMA copy
    meta = json.loads((compiled / "encoder.json").read_text())
    assert meta["config"]["compile"] is True and np.isfinite(meta["final_loss"])
    assert encoder_tensors(compiled).keys() == encoder_tensors(eager).keys()
    assert not any("_orig_mod" in key for key in torch.load(compiled / LAST_CKPT, weights_only=True)["state_dict"])


@pytest.mark.slow
def test_compile_falls_back_to_eager_with_the_reason(toy_cache, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("CXX", "no-such-compiler")
    monkeypatch.setattr(torch.nn.Module, "compile", lambda *_, **__: pytest.fail("compiled without a compiler"))
    run = pretrain("simclr", toy_cache.path, tmp_path / "r", overrides=[*TINY, "max_steps=1", "compile=true"])
    assert "no C++ compiler 'no-such-compiler'" in caplog.text and "running eager" in caplog.text
    assert json.loads((run / "encoder.json").read_text())["config"]["compile"] is True
