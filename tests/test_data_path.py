"""The training data path: whole batches read in one pass, and a default worker count that follows the cores."""

from __future__ import annotations

import os

import pytest
import torch

from cxrl.data.torch_dataset import CacheDataModule
from cxrl.train import default_workers, resolve_config


def test_a_batch_is_one_read_in_sampler_order(toy_cache):
    """``__getitems__`` (what the DataLoader calls) equals the samples one by one, repeats and order kept."""
    dataset = CacheDataModule(toy_cache, batch_size=4).dataset
    positions = [5, 2, 5, 0]
    batch = dataset.__getitems__(positions)
    images, indices, labels = batch["image"], batch["index"], batch["labels"]
    one_by_one = [dataset[p] for p in positions]
    assert images.dtype == torch.uint8 and images.shape == (4, 64, 64)
    assert torch.equal(images, torch.stack([s["image"] for s in one_by_one]))
    assert indices.tolist() == [int(s["index"]) for s in one_by_one]
    assert torch.equal(labels, torch.stack([s["labels"] for s in one_by_one]))


def test_the_loader_yields_the_batch_of_its_sampler(toy_cache):
    dm = CacheDataModule(toy_cache, batch_size=16)
    loader = dm.train_dataloader()
    batch = next(iter(loader))
    images, indices = batch["image"], batch["index"]
    first = list(loader.sampler)[:16]
    assert indices.tolist() == dm.dataset.rows[first].tolist()
    assert torch.equal(images, torch.from_numpy(toy_cache.images[indices.numpy()]))


@pytest.mark.parametrize(("cores", "devices", "workers"), [(16, 1, 8), (2, 1, 1), (16, 8, 1), (1, 1, 0)])
def test_default_workers_follow_the_cores(monkeypatch, cores, devices, workers):
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: set(range(cores)), raising=False)
    assert default_workers(devices) == workers
    assert resolve_config("simclr").num_workers is None  # unset: default_workers decides at run time
