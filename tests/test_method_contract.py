"""The method contract: a method registered in this file (its own config dataclass, two encoders, a dict batch
with report-token columns, its own text learning rate) trains through the engine and exports both encoders."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from torch import nn

from cxrl.cli import main
from cxrl.data.cache import write_cache
from cxrl.data.tokens import load_tokens, report_columns, tokenize_reports
from cxrl.errors import ConfigError
from cxrl.methods import PretrainMethod, register_method
from cxrl.methods.registry import unregister_method
from cxrl.models import create_text_encoder, load_encoder
from cxrl.models.text_tokenizer import train_tokenizer
from cxrl.train import pretrain
from cxrl.transforms import ViewConfig

pytestmark = pytest.mark.usefixtures("one_thread")
SEEN_COLUMNS: list[list[str]] = []
RUN = ["backbone=tiny_cnn", "image_size=32", "batch_size=16", "num_workers=0", "optimizer=adamw", "lr=1e-3",
       "warmup_epochs=0", "progress_bar=false", "monitor.enabled=false", "max_steps=2"]


@dataclass
class ToyConfig:
    name: str = "toy_clip"
    dim: int = 8
    text_lr: float = 1e-5
    tokenizer: str = ""
    max_length: int = 16


class ToyCLIP(PretrainMethod):
    """Toy image-report contrastive method (tests only)."""

    columns = ("image", "index", "report_tokens", "report_mask")

    def __init__(self, encoder: nn.Module, cfg: ToyConfig, ctx) -> None:
        super().__init__()
        self.encoder, self.cfg = encoder, cfg
        self.text = create_text_encoder("tiny_text", tokenizer=cfg.tokenizer, hidden_size=16, num_hidden_layers=1,
                                        num_attention_heads=2, intermediate_size=32)
        self.image_proj = nn.Linear(encoder.num_features, cfg.dim)
        self.text_proj = nn.Linear(self.text.num_features, cfg.dim)
        self.views = [ViewConfig(size=ctx.image_size)]

    def column_arrays(self, cache) -> dict[str, np.ndarray]:
        return report_columns(load_tokens(tokenize_reports(cache.path, self.cfg.tokenizer, self.cfg.max_length)))

    def loss(self, views, batch):
        SEEN_COLUMNS.append(sorted(batch))
        image = F.normalize(self.image_proj(self.encoder(views[0])), dim=1)
        text = self.text(batch["report_tokens"].long(), batch["report_mask"]).pooled
        logits = image @ F.normalize(self.text_proj(text), dim=1).T / 0.1
        return F.cross_entropy(logits, torch.arange(len(logits))), {}

    def encoders(self) -> dict[str, nn.Module]:
        return {"image": self.encoder, "text": self.text}

    def export_meta(self, name: str) -> dict:
        return {"max_length": self.cfg.max_length} if name == "text" else {}

    def lr_groups(self):
        return [(self.text, self.cfg.text_lr), (self, None)]


class GroupLRs(Callback):
    def on_train_start(self, trainer, pl_module) -> None:
        self.lrs = [(len(g["params"]), g["lr"]) for g in trainer.optimizers[0].param_groups]


@pytest.fixture
def toy_method():
    register_method("toy_clip", config=ToyConfig)(ToyCLIP)
    yield
    unregister_method("toy_clip")


@pytest.fixture(scope="module")
def report_cache(toy_cache, tmp_path_factory):
    """The toy cache with a short report per image that names its findings."""
    records = toy_cache.records.copy()
    records["report_text"] = [
        " ".join(["Cardiomegaly." if r["Cardiomegaly"] == 1 else "Normal heart size.",
                  "Effusion." if r["Pleural Effusion"] == 1 else "No effusion."]) for _, r in records.iterrows()
    ]
    folder = tmp_path_factory.mktemp("report_cache")
    cache = write_cache(folder, np.asarray(toy_cache.images), records, {"source": "toy"})
    tokenizer = tmp_path_factory.mktemp("tokenizer")
    train_tokenizer(records["report_text"].tolist(), tokenizer, vocab_size=120)
    return cache, tokenizer


@pytest.mark.slow
def test_a_method_registered_in_a_test_trains_through_the_engine(report_cache, tmp_path, toy_method):
    cache, tokenizer = report_cache
    lrs = GroupLRs()
    SEEN_COLUMNS.clear()
    run = pretrain("toy_clip", cache.path, tmp_path / "run", overrides=[*RUN, f"method.tokenizer={tokenizer}",
                                                                         "method.dim=4"], callbacks=[lrs])
    assert SEEN_COLUMNS == [["image", "index", "report_mask", "report_tokens"]] * 2  # the declared columns
    assert {lr for n, lr in lrs.lrs if n} == {1e-5, 1e-3}  # the text tower at text_lr, the rest at lr
    image, meta = load_encoder(run)
    text, text_meta = load_encoder(run, "text")
    assert meta["method"] == "toy_clip" and meta["config"]["method"]["dim"] == 4
    assert text_meta["modality"] == "text" and text_meta["max_length"] == 16 and len(text_meta["weights_sha256"]) == 64
    assert image(torch.zeros(2, 1, 32, 32)).shape == (2, image.num_features)
    ids = text.tokenize(["Cardiomegaly."], 16)
    assert text(ids["input_ids"], ids["attention_mask"]).pooled.shape == (1, 16)


def test_a_registered_method_has_its_own_config_keys_and_cli_entry(report_cache, tmp_path, toy_method, capsys):
    cache, _ = report_cache
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) method.temperature; valid keys: .*method.text_lr"):
        pretrain("toy_clip", cache.path, tmp_path / "run", overrides=[*RUN, "method.temperature=0.2"])
    with pytest.raises(SystemExit):
        main(["pretrain", "--help"])
    assert "toy_clip" in capsys.readouterr().out
