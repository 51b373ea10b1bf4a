"""Killing a run and resuming it from last.ckpt ends with the same weights as never stopping (CPU, deterministic)."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from engine_support import TINY, encoder_tensors
from safetensors.torch import load_file

from cxrl.errors import ConfigError
from cxrl.train import pretrain

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


class Kill(pl.Callback):
    """Raise before the step after ``at_step`` (its checkpoint is already written), like a preempted job."""

    def __init__(self, at_step: int) -> None:
        self.at_step = at_step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.at_step:
            raise RuntimeError("killed")


# 60 train images / 16 = 3 steps per epoch: the kill at step 4 is mid-epoch 1, the end at step 7 is in epoch 2.
# Every stateful method (queues, EMA targets, prototypes, a head on labels) and every schedule and clipping option.
@pytest.mark.parametrize(
    ("method", "extra"),
    [
        ("simclr", []),
        ("moco_v2", []),
        ("byol", []),
        ("swav", []),
        ("supervised", []),
        ("simclr", ["scheduler=onecycle", "warmup_epochs=1"]),
        ("simclr", ["scheduler=cosine", "warmup_epochs=1", "min_lr_ratio=0.2"]),
        ("simclr", ["grad_clip=0.01"]),
    ],
)
def test_kill_and_resume_equals_uninterrupted(toy_cache, tmp_path, method, extra):
    overrides = [*TINY, "max_steps=7", "checkpoint_every_n_steps=2", "deterministic=true", "method.queue_size=64",
                 *extra]  # fmt: skip
    whole = pretrain(method, toy_cache.path, tmp_path / "whole", overrides=overrides)
    with pytest.raises(RuntimeError, match="killed"):
        pretrain(method, toy_cache.path, tmp_path / "split", overrides=overrides, callbacks=[Kill(at_step=4)])
    assert not (tmp_path / "split" / "encoder.safetensors").exists()
    with pytest.raises(ConfigError, match="was trained with"):
        pretrain("byol" if method != "byol" else "simclr", toy_cache.path, tmp_path / "split", resume=True)
    resumed = pretrain(method, toy_cache.path, tmp_path / "split", resume=True)
    expected, found = encoder_tensors(whole), encoder_tensors(resumed)
    assert expected.keys() == found.keys()
    for name, tensor in expected.items():
        torch.testing.assert_close(found[name], tensor, rtol=0, atol=1e-6, msg=name)
    start = pretrain(method, toy_cache.path, tmp_path / "other_seed", overrides=[*overrides, "seed=1", "max_steps=1"])
    assert any(not torch.equal(encoder_tensors(start)[k], t) for k, t in expected.items())


# Image-report methods: ConVIRT with CLIP's learnable logit scale, GLoRIA, and MGCA with its prototypes, frozen for
# the first 3 steps (so the kill at step 4 falls after the release).
TEXT_SIDE = ["method.proj_hidden_dim=32", "method.proj_dim=16", "method.vocab_size=120", "method.tiny_width=32",
             "method.tiny_layers=1"]


@pytest.mark.parametrize(
    ("method", "extra"),
    [
        ("convirt", ["method.learn_temperature=true"]),
        ("gloria", ["method.local_dim=16"]),
        ("mgca", ["method.local_dim=16", "method.num_prototypes=12", "method.freeze_prototypes_steps=3"]),
    ],
)
def test_image_text_methods_resume_to_the_same_weights(toy_report_cache, tmp_path, method, extra):
    overrides = [*TINY[:9], *TEXT_SIDE, *extra, "max_steps=7", "checkpoint_every_n_steps=2", "deterministic=true"]
    whole = pretrain(method, toy_report_cache.path, tmp_path / "whole", overrides=overrides)
    with pytest.raises(RuntimeError, match="killed"):
        pretrain(method, toy_report_cache.path, tmp_path / "split", overrides=overrides, callbacks=[Kill(at_step=4)])
    resumed = pretrain(method, toy_report_cache.path, tmp_path / "split", resume=True)
    for part in ("encoder.safetensors", "text/encoder.safetensors", "projection.safetensors"):
        expected, found = (load_file(str(run / part)) for run in (whole, resumed))
        assert expected.keys() == found.keys()
        for name, tensor in expected.items():
            torch.testing.assert_close(found[name], tensor, rtol=0, atol=1e-6, msg=f"{part}: {name}")
