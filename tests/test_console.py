"""A pre-training run's console: none of Lightning's noise about itself, real warnings kept, no monitor bar
when ``progress_bar=false``."""

from __future__ import annotations

import logging
import warnings

import lightning.pytorch as pl
import pytest
from engine_support import TINY

from cxrl.train import pretrain

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


class Warn(pl.Callback):
    def on_train_start(self, trainer, pl_module) -> None:
        warnings.warn("a real problem", UserWarning, stacklevel=1)


def test_pretrain_shows_real_warnings_but_not_lightning_noise_or_a_monitor_bar(toy_cache, tmp_path, caplog, capsys):
    overrides = [*TINY, "max_steps=3", "monitor.enabled=true", "monitor.batch_size=8"]
    with caplog.at_level(logging.INFO), pytest.warns(UserWarning) as record:
        pretrain("simclr", toy_cache.path, tmp_path / "run", overrides=overrides, callbacks=[Warn()])
    messages = [str(w.message) for w in record]
    assert "a real problem" in messages
    assert not [m for m in messages if "LeafSpec" in m or "smaller than the logging interval" in m], messages
    assert "Tip" not in caplog.text and "pre-training done" in caplog.text
    assert "monitor" not in capsys.readouterr().err
