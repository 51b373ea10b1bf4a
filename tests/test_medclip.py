"""MedCLIP (`cxrl pretrain medclip`): images and a separately drawn text batch from a text pool, matched by
semantic matching on their labels; reproducible draws; images without reports and reports without images
contribute; gathered across gloo processes as one process; resumes to the same weights; exports what zero-shot
reads."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from engine_support import encoder_tensors, on_two_gloo_ranks
from test_resume import Kill
from test_semantic_matching import naive

from cxrl.data.cache import write_cache
from cxrl.data.torch_dataset import CacheDataModule
from cxrl.errors import ConfigError
from cxrl.losses import distributed, semantic_matching_loss
from cxrl.methods.base import BuildContext
from cxrl.methods.medclip import MedCLIP, MedCLIPConfig
from cxrl.models import create_encoder
from cxrl.models.export import load_encoder
from cxrl.models.image_text import load_image_text
from cxrl.train import pretrain

pytestmark = pytest.mark.usefixtures("one_thread")
SMALL = dict(proj_hidden_dim=32, proj_dim=16, vocab_size=120, tiny_width=32, tiny_layers=2)
OVERRIDES = ["backbone=tiny_cnn", "image_size=32", "batch_size=16", "num_workers=0", "lr=2e-3", "warmup_epochs=0",
             "progress_bar=false", "monitor.enabled=false", "log_every_n_steps=1",
             *(f"method.{k}={v}" for k, v in SMALL.items())]


def _method(cache, **cfg) -> tuple[MedCLIP, CacheDataModule]:
    data = CacheDataModule(cache, batch_size=16)
    ctx = BuildContext(32, data.targets, cache, pathologies=data.pathologies, seed=3)
    torch.manual_seed(0)
    return MedCLIP(create_encoder("tiny_cnn"), MedCLIPConfig(**{**SMALL, **cfg}), ctx), data


def _image_batch(data: CacheDataModule, positions) -> dict[str, torch.Tensor]:
    return data.dataset.__getitems__(list(positions))


def _losses(run) -> np.ndarray:
    return pd.read_csv(run / "logs/csv/version_0/metrics.csv")["train/loss"].dropna().to_numpy()


def test_the_pool_is_the_train_reports_with_their_studys_labels_and_draws_are_seeded(toy_report_cache, monkeypatch):
    method, data = _method(toy_report_cache)
    tokens = method.report_tokens(toy_report_cache)
    assert len(method.pool_ids) == len(data.rows)  # every train row of the toy cache has a report
    assert torch.equal(method.pool_ids, torch.as_tensor(tokens.ids[data.rows].astype(np.int32)))
    torch.testing.assert_close(method.pool_labels, torch.as_tensor(data.targets))
    first = method.draw_texts(8)
    assert all(torch.equal(a, b) for a, b in zip(first, method.draw_texts(8), strict=True))  # a resumed step
    method.on_step_start(1, 10)
    assert not torch.equal(method.draw_texts(8)[0], first[0])  # the next step draws others
    method.on_step_start(0, 10)
    monkeypatch.setattr(distributed, "rank", lambda: 1)
    assert not torch.equal(method.draw_texts(8)[0], first[0])  # another rank draws others
    with pytest.raises(ConfigError, match="text pool holds"):
        method.draw_texts(len(data.rows) + 1)


def test_the_loss_is_semantic_matching_of_the_images_against_the_drawn_texts(toy_report_cache):
    method, data = _method(toy_report_cache, label_similarity="dot", text_batch_size=5)
    method.eval()
    batch, views = _image_batch(data, range(7)), [torch.randn(7, 1, 32, 32)]
    with torch.no_grad():
        loss = method.loss(views, batch)[0]
        ids, mask, text_labels = method.draw_texts(5)
        image = method.image_projection(method.encoder(views[0]))
        text = method.text_projection(method.text(ids, mask).pooled)
        expected = naive(image.double(), text.double(), batch["labels"].double(), text_labels.double(),
                         1 / method.logit_scale().double(), dot=True)
    assert len(text) == 5 and len(image) == 7  # images and texts unpaired, in unequal numbers
    torch.testing.assert_close(loss.double(), expected, rtol=1e-5, atol=1e-6)


def test_medclip_trains_from_the_cli_lowering_the_loss_and_exports_what_zeroshot_reads(toy_report_cache, tmp_path):
    run = pretrain("medclip", toy_report_cache.path, tmp_path / "medclip", overrides=[*OVERRIDES, "max_steps=40"])
    losses = _losses(run)
    assert losses[-8:].mean() < losses[:8].mean() - 0.05, (losses[:8].mean(), losses[-8:].mean())
    model = load_image_text(run)
    assert model.text(["Pleural effusion."]).shape == model.image(torch.zeros(1, 1, 32, 32)).shape == (1, 16)
    assert load_encoder(run, "text")[0].pooling == "medclip"  # the exported tower pools as it trained


@pytest.fixture
def few_reports(toy_report_cache, tmp_path):
    """The toy cache with reports on 8 train rows only; a text-only cache of 6 reports without label columns."""
    records = toy_report_cache.records.copy()
    train = np.flatnonzero(records["split"].eq("train"))
    records.loc[records.index[train[8:]], "findings"] = None
    images = np.asarray(toy_report_cache.images)
    sparse = write_cache(tmp_path / "sparse", images, records, {"source": "toy"})
    texts = pd.DataFrame({"image_path": [f"/t/{i}" for i in range(6)], "patient_id": "t", "study_id": "t",
                          "split": "train", "findings": ["Cardiomegaly. No pleural effusion. No pulmonary edema."] * 6})
    return sparse, write_cache(tmp_path / "texts", images[:6], texts, {"source": "toy"})


def test_images_without_reports_train_and_text_only_reports_join_the_pool(few_reports, tmp_path):
    sparse, texts = few_reports
    method, data = _method(sparse, text_data=[str(texts.path)])
    assert len(method.pool_ids) == 8 + 6
    cardio, effusion, edema = (data.pathologies.index(p) for p in ("Cardiomegaly", "Pleural Effusion", "Edema"))
    assert (method.pool_labels[8:][:, [cardio, effusion, edema]] == torch.tensor([1.0, 0.0, 0.0])).all()  # labeler
    without = np.flatnonzero(sparse.records["findings"].iloc[data.rows].isna().to_numpy())[:6]
    loss = method.loss([torch.randn(6, 1, 32, 32)], _image_batch(data, without))[0]
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in method.encoder.parameters() if p.requires_grad)
    run = pretrain("medclip", sparse.path, tmp_path / "sparse", overrides=[*OVERRIDES, "max_steps=30",
                                                                          "method.text_batch_size=8"])
    losses = _losses(run)
    assert losses[-6:].mean() < losses[:6].mean() - 0.05, (losses[:6].mean(), losses[-6:].mean())


def test_medclip_pooling_is_the_token_mean_of_hidden_layers_one_two_and_last(toy_report_cache):
    method, _ = _method(toy_report_cache, tiny_layers=3)
    text = method.text.eval()
    ids, mask, _ = method.draw_texts(4)
    with torch.no_grad():
        features = text(ids, mask)
        hidden = text.model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
    assert text.pooling == "medclip" and len(hidden) == 4  # embeddings + 3 layers: 1, 2 and last all differ
    weights = mask.unsqueeze(-1).float()
    expected = (((hidden[1] + hidden[2] + hidden[3]) / 3) * weights).sum(1) / weights.sum(1)
    torch.testing.assert_close(features.pooled, expected)
    torch.testing.assert_close(features.tokens, hidden[3])
    with pytest.raises(ConfigError, match="hidden layers 1, 2 and last"):
        _method(toy_report_cache, tiny_layers=1)


def test_refusals(toy_report_cache):
    for bad in (dict(loss="info_nce"), dict(sentence_prob=1.0), dict(uncertainty="multiclass"),
                dict(label_similarity="jaccard")):
        with pytest.raises(ConfigError, match="not an option of medclip"):
            _method(toy_report_cache, **bad)


def _ddp_worker(rank: int, world: int, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    mine = {k: x.chunk(world)[rank].clone() for k, x in inputs.items()}
    v, t = mine["v"].requires_grad_(), mine["t"].requires_grad_()
    loss = semantic_matching_loss(v, t, mine["lv"], mine["lt"], temperature=0.1, gather=True)
    gv, gt = torch.autograd.grad(loss, [v, t])
    return {"loss": loss.detach(), "gv": gv, "gt": gt}


@pytest.mark.slow
def test_two_gloo_processes_equal_one_process_on_the_whole_image_and_text_batches(tmp_path):
    gen = torch.Generator().manual_seed(0)
    inputs = {"v": torch.randn(8, 5, generator=gen), "t": torch.randn(6, 5, generator=gen),
              "lv": torch.randint(-1, 2, (8, 4), generator=gen).float(),
              "lt": torch.randint(-1, 2, (6, 4), generator=gen).float()}
    ranks = on_two_gloo_ranks(_ddp_worker, tmp_path, inputs)
    v, t = inputs["v"].clone().requires_grad_(), inputs["t"].clone().requires_grad_()
    full = semantic_matching_loss(v, t, inputs["lv"], inputs["lt"], temperature=0.1)
    full.backward()
    local = [semantic_matching_loss(*(x.chunk(2)[r] for x in inputs.values()), temperature=0.1) for r in range(2)]
    assert not torch.isclose(sum(local) / 2, full)  # without gathering, the other rank's texts and images are missing
    torch.testing.assert_close((ranks[0]["loss"] + ranks[1]["loss"]) / 2, full.detach())
    torch.testing.assert_close(torch.cat([r["gv"] for r in ranks]) / 2, v.grad)  # DDP divides by world size
    torch.testing.assert_close(torch.cat([r["gt"] for r in ranks]) / 2, t.grad)


@pytest.mark.slow
def test_kill_and_resume_draws_the_same_texts_and_ends_with_the_same_weights(toy_report_cache, tmp_path):
    overrides = [*OVERRIDES, "max_steps=7", "checkpoint_every_n_steps=2", "deterministic=true"]
    whole = pretrain("medclip", toy_report_cache.path, tmp_path / "whole", overrides=overrides)
    with pytest.raises(RuntimeError, match="killed"):
        pretrain("medclip", toy_report_cache.path, tmp_path / "split", overrides=overrides, callbacks=[Kill(4)])
    resumed = pretrain("medclip", toy_report_cache.path, tmp_path / "split", resume=True)
    expected, found = encoder_tensors(whole), encoder_tensors(resumed)
    for name, tensor in expected.items():
        torch.testing.assert_close(found[name], tensor, rtol=0, atol=1e-6, msg=name)
    other = pretrain("medclip", toy_report_cache.path, tmp_path / "other", overrides=[*overrides, "seed=1"])
    assert any(not torch.equal(encoder_tensors(other)[k], t) for k, t in expected.items())
