"""``--resume`` refuses what it cannot continue (another model or cache, a bad checkpoint) with a clear error,
leaves a finished run alone, and Ctrl-C says how to resume."""

from __future__ import annotations

import json
import logging
import shlex
import shutil
import signal

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from engine_support import TINY

from cxrl import cli
from cxrl.data.cache import write_cache
from cxrl.errors import ConfigError, CxrlError
from cxrl.train import LAST_CKPT, check_image_size, pretrain, resolve_config

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]
RUN = [*TINY, "max_steps=4", "checkpoint_every_n_steps=1"]


class Stop(pl.Callback):
    """Raise ``error`` before step ``at_step`` (its checkpoint is written): a kill or a Ctrl-C."""

    def __init__(self, at_step: int, error: BaseException) -> None:
        self.at_step, self.error = at_step, error

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.at_step:
            raise self.error


@pytest.fixture(scope="module")
def killed_run(toy_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("killed") / "run"
    with pytest.raises(RuntimeError, match="killed"):
        pretrain("simclr", toy_cache.path, out, overrides=RUN, callbacks=[Stop(2, RuntimeError("killed"))])
    return out


def copy_of(run, tmp_path):
    return shutil.copytree(run, tmp_path / "run")


def test_resume_with_another_backbone_or_head_is_a_config_error(killed_run, toy_cache):
    with pytest.raises(ConfigError, match="backbone 'tiny_cnn', not 'resnet18'"):
        pretrain("simclr", toy_cache.path, killed_run, overrides=["backbone=resnet18"], resume=True)
    with pytest.raises(ConfigError, match=r"another model .*proj"):
        pretrain("simclr", toy_cache.path, killed_run, overrides=["method.proj_dim=8"], resume=True)


def test_resume_on_another_cache_is_refused_naming_both(killed_run, toy_cache, tmp_path):
    other = write_cache(tmp_path / "other", np.asarray(toy_cache.images), toy_cache.records, {"source": "toy"})
    with pytest.raises(ConfigError, match="trained on the cache") as error:
        pretrain("simclr", other.path, killed_run, resume=True)
    assert str(toy_cache.path) in str(error.value) and str(other.path) in str(error.value)


class Payload:
    """Stands for any pickled object a hostile checkpoint could carry."""


@pytest.mark.parametrize("damage", ["truncated", "hostile"])
def test_a_truncated_or_hostile_checkpoint_is_a_clear_error(killed_run, toy_cache, tmp_path, damage):
    run = copy_of(killed_run, tmp_path)
    ckpt = run / LAST_CKPT
    if damage == "truncated":
        ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    else:
        torch.save({"state_dict": {}, "payload": Payload()}, ckpt)
    with pytest.raises(CxrlError, match="cannot be read as a cxrl checkpoint") as error:
        pretrain("simclr", toy_cache.path, run, resume=True)
    assert "weights_only=False" not in str(error.value)


def test_resuming_a_finished_run_leaves_its_export_alone(toy_cache, tmp_path):
    run = pretrain("simclr", toy_cache.path, tmp_path / "done", overrides=[*TINY, "max_steps=2"])
    before = (run / "encoder.json").read_bytes()
    pretrain("simclr", toy_cache.path, run, resume=True)
    assert (run / "encoder.json").read_bytes() == before
    meta = json.loads(before, parse_constant=lambda c: pytest.fail(f"encoder.json holds {c}"))
    assert np.isfinite(meta["final_loss"])


def test_image_size_far_above_the_cache_is_refused_before_training(toy_cache, tmp_path):
    with pytest.raises(ConfigError, match=r"image_size=512 is 8x the 64-px images"):
        pretrain("simclr", toy_cache.path, tmp_path / "big", overrides=[*TINY, "image_size=512", "max_steps=1"])
    assert not (tmp_path / "big" / LAST_CKPT).exists()


def test_upsampling_a_cache_warns(toy_cache, caplog):
    with caplog.at_level(logging.WARNING, logger="cxrl.train"):
        check_image_size(resolve_config("simclr", overrides=["image_size=96"]), toy_cache)
    assert "image_size=96 upsamples the 64-px images" in caplog.text


def test_ctrl_c_says_the_resume_command_and_it_works(toy_cache, tmp_path, caplog):
    handler = signal.getsignal(signal.SIGINT)
    with caplog.at_level(logging.WARNING, logger="cxrl.train"), pytest.raises(KeyboardInterrupt):
        pretrain("simclr", toy_cache.path, tmp_path / "r", overrides=RUN, callbacks=[Stop(2, KeyboardInterrupt())])
    assert signal.getsignal(signal.SIGINT) is handler
    command = caplog.text.split("continue from the last checkpoint with:\n")[1].splitlines()[0].strip()
    assert command.startswith("cxrl pretrain simclr") and command.endswith("--resume")
    assert cli.main(shlex.split(command)[1:]) == 0
    assert (tmp_path / "r" / "encoder.safetensors").is_file()
