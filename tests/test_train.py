"""The engine: config resolution and errors, the CLI, seeded sharded sampling, an end-to-end run and its export."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from engine_support import TINY

from cxrl import cli
from cxrl.data.torch_dataset import CacheDataModule, SeededSampler
from cxrl.errors import ConfigError, DataError
from cxrl.models import load_encoder
from cxrl.train import LAST_CKPT, pretrain, resolve_config

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("method", ["simclr", "moco", "moco_v2", "moco_v3", "byol", "swav", "supervised"])
def test_every_method_has_a_packaged_config(method):
    cfg = resolve_config(method, overrides=["backbone=resnet18", "batch_size=32"])
    assert cfg.method.name == ("moco_v2" if method == "moco" else method)
    assert (cfg.backbone, cfg.batch_size) == ("resnet18", 32)


def test_unknown_override_lists_valid_keys():
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) bogus; valid keys: .*batch_size"):
        resolve_config("simclr", overrides=["bogus=1"])
    with pytest.raises(ConfigError, match="method.temprature"):
        resolve_config("simclr", overrides=["method.temprature=0.2"])
    with pytest.raises(ConfigError, match="'lr'"):
        resolve_config("simclr", overrides=["lr=fast"])


def test_unknown_method_is_a_clear_error():
    with pytest.raises(ConfigError, match="unknown method 'dino'.*simclr"):
        resolve_config("dino")


def test_cli_reports_errors_cleanly(toy_cache, tmp_path, capsys):
    code = cli.main(["pretrain", "simclr", "--data", str(toy_cache.path), "--out", str(tmp_path / "r"), "nope=1"])
    assert code == 1 and "unknown config key(s) nope" in capsys.readouterr().err
    code = cli.main(["pretrain", "simclr", "--data", str(toy_cache.path), "--out", str(tmp_path / "r"), "--resume"])
    assert code == 1 and "no checkpoint" in capsys.readouterr().err


def test_cli_takes_overrides_after_the_options(toy_cache):
    args = cli.parse(
        ["pretrain", "byol", "a=1", "--data", "D", "--out", "R", "--resume", "batch_size=8", "method.proj_dim=4"]
    )
    assert (args.method, args.data, args.out, args.resume) == ("byol", "D", "R", True)
    assert args.overrides == ["a=1", "batch_size=8", "method.proj_dim=4"]
    with pytest.raises(SystemExit):  # anything else after the options is still an error
        cli.parse(["pretrain", "byol", "--data", "D", "--out", "R", "--bogus"])


def test_global_batch_must_divide_over_devices(toy_cache, tmp_path):
    with pytest.raises(ConfigError, match="batch_size=16 is the global batch.*devices x num_nodes = 3"):
        pretrain("simclr", toy_cache.path, tmp_path / "r", overrides=[*TINY, "devices=3", "accelerator=cpu"])
    with pytest.raises(DataError, match="cannot fill one global batch"):
        pretrain("simclr", toy_cache.path, tmp_path / "r", overrides=[*TINY, "batch_size=64"])
    with pytest.raises(DataError, match="no records with split in \\['nope'\\]"):
        pretrain("simclr", toy_cache.path, tmp_path / "r", overrides=[*TINY, "train_splits=[nope]"])


def test_sampler_shards_the_same_global_order_over_any_rank_count():
    one = list(SeededSampler(40, seed=3))
    two = [list(SeededSampler(40, seed=3, rank=r, world_size=2)) for r in range(2)]
    for k in range(0, 20, 4):  # a global batch of 8 = 4 per rank
        assert sorted(two[0][k : k + 4] + two[1][k : k + 4]) == sorted(one[2 * k : 2 * k + 8])
    sampler = SeededSampler(40, seed=3)
    sampler.set_epoch(1)
    assert list(sampler) != one and sorted(sampler) == list(range(40))


def test_weighted_sampler_is_seeded_and_favours_heavy_samples():
    weights = np.r_[np.full(10, 9.0), np.ones(90)]
    draws = list(SeededSampler(100, seed=0, weights=weights))
    assert draws == list(SeededSampler(100, seed=0, weights=weights))
    assert sum(d < 10 for d in draws) > 30  # half the mass on 10% of the samples


def test_batch_transfer_leaves_the_sample_indices_on_the_cpu(toy_cache):
    """Indices only feed the CPU-side view seeds; images and labels go to the device (``meta`` stands in for a GPU)."""
    dm = CacheDataModule(toy_cache, batch_size=16)
    batch = next(iter(dm.train_dataloader()))
    moved = dm.transfer_batch_to_device(batch, torch.device("meta"), 0)
    assert moved["image"].device.type == "meta" and moved["labels"].device.type == "meta"
    assert moved["index"].device.type == "cpu" and torch.equal(moved["index"], batch["index"])


def test_datamodule_labels_policy_and_resumable_loader(toy_cache):
    dm = CacheDataModule(toy_cache, batch_size=16, uncertainty="zeros", weighted_sampling=True)
    assert dm.pathologies == ["Cardiomegaly", "Edema", "Pleural Effusion"]
    assert set(toy_cache.records["split"].iloc[dm.rows]) == {"train"} and dm.steps_per_epoch(1) == 3
    sample = dm.dataset[0]
    image, labels = sample["image"], sample["labels"]
    assert image.dtype == torch.uint8 and image.shape == (64, 64) and labels.shape == (3,)
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(2)
    full = [b["index"].tolist() for b in loader]
    seen = iter(loader)
    next(seen)
    state = loader.state_dict()
    resumed = dm.train_dataloader()
    resumed.load_state_dict(state)
    resumed.sampler.set_epoch(2)
    assert state == {"epoch": 2, "batches": 1} and [b["index"].tolist() for b in resumed] == full[1:]
    assert [b["index"].tolist() for b in resumed] == full  # the skip applies once


@pytest.mark.slow
def test_pretrain_end_to_end_writes_a_loadable_encoder(toy_cache, tmp_path):
    overrides = [*TINY, "max_steps=4", "monitor.enabled=true", "log_every_n_steps=1"]
    run = pretrain("simclr", toy_cache.path, tmp_path / "run", overrides=overrides)
    for name in ("config.yaml", "encoder.safetensors", "encoder.json", LAST_CKPT):
        assert (run / name).is_file(), name
    encoder, meta = load_encoder(run)
    assert (meta["method"], meta["backbone"], meta["image_size"], meta["steps"]) == ("simclr", "tiny_cnn", 32, 4)
    assert np.isfinite(meta["final_loss"]) and meta["config"]["batch_size"] == 16
    assert encoder(torch.zeros(2, 1, 32, 32)).shape == (2, encoder.num_features)
    metrics = pd.read_csv(next(run.glob("logs/csv/version_0/metrics.csv")))
    assert {"train/loss", "monitor/feat_std", "monitor/auroc"} <= set(metrics.columns)
    assert metrics["monitor/auroc"].dropna().between(0, 1).all()
    with pytest.raises(ConfigError, match="already holds a run"):
        pretrain("simclr", toy_cache.path, run, overrides=TINY)


@pytest.mark.slow
def test_supervised_pretraining_with_weighted_sampling_and_focal_loss(toy_cache, tmp_path):
    overrides = [*TINY, "max_steps=3", "method.weighted_sampling=true", "method.loss=focal", "precision=bf16-mixed"]
    run = pretrain("supervised", toy_cache.path, tmp_path / "sup", overrides=overrides)
    meta = json.loads((run / "encoder.json").read_text())
    assert meta["pathologies"] == ["Cardiomegaly", "Edema", "Pleural Effusion"] and np.isfinite(meta["final_loss"])
