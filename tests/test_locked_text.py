"""A locked text tower (LiT-style, `method.locked_text=true`): frozen whole, its pooled report features computed
once, cached beside the tokens and read back in training, so only the image tower and the projections learn."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_convirt import RUN

from cxrl.data.text_features import cached_text_features
from cxrl.errors import ConfigError
from cxrl.methods.base import BuildContext
from cxrl.methods.convirt import ConVIRT, ConVIRTConfig
from cxrl.methods.gloria import GLoRIA, GLoRIAConfig
from cxrl.models import create_encoder
from cxrl.models.export import load_encoder
from cxrl.train import pretrain

pytestmark = pytest.mark.usefixtures("one_thread")
SMALL = dict(proj_hidden_dim=64, proj_dim=32, vocab_size=120)


def _method(cache, **extra) -> ConVIRT:
    torch.manual_seed(0)
    return ConVIRT(create_encoder("tiny_cnn"), ConVIRTConfig(**SMALL, **extra), BuildContext(32, cache=cache))


def test_cached_features_are_the_towers_pooled_output_row_for_row_and_are_written_once(toy_report_cache):
    method = _method(toy_report_cache, locked_text=True)
    tokens = method.report_tokens(toy_report_cache)
    features = cached_text_features(tokens, method.text)
    method.text.eval()
    with torch.no_grad():
        want = method.text(*tokens.batch(np.arange(len(tokens.lengths)))).pooled.numpy()
    np.testing.assert_allclose(features, want, rtol=1e-5, atol=1e-5)
    path = next(tokens.path.glob("features-*.npy"))
    written = path.stat().st_mtime_ns
    assert cached_text_features(tokens, method.text).shape == features.shape and path.stat().st_mtime_ns == written
    with torch.no_grad():  # another tower (other weights) gets its own file
        next(method.text.parameters()).add_(1.0)
    cached_text_features(tokens, method.text)
    assert len(list(tokens.path.glob("features-*.npy"))) == 2


def test_training_reads_the_cache_not_the_tower_and_the_tower_gets_no_gradient(toy_report_cache):
    method = _method(toy_report_cache, locked_text=True).train()
    assert "report_features" in method.columns and not any(p.requires_grad for p in method.text.parameters())
    rows = np.arange(8)
    batch = {k: torch.from_numpy(np.asarray(v[rows])) for k, v in method.column_arrays(toy_report_cache).items()}
    calls = []
    method.text.register_forward_hook(lambda *args: calls.append(1))
    loss, _ = method.loss([torch.randn(len(rows), 1, 32, 32)], batch)
    loss.backward()
    assert not calls and all(p.grad is not None for p in method.text_projection.parameters())
    method.eval()
    method.text_features(batch)  # evaluation (prompts, retrieval) runs the tower itself
    assert calls


@pytest.mark.parametrize("negation", [False, True])
def test_sentence_views_read_the_cached_features_of_the_very_sentence_the_tower_would_see(toy_report_cache, negation):
    """With sentence_prob the cached feature of row i is the tower's pooled output on the sentence view that
    text_view keeps for it (the same draw), for the report and for its negation flip; uncut rows stay whole."""
    method = _method(toy_report_cache, locked_text=True, sentence_prob=0.6, negation_negatives=negation).train()
    rows = np.arange(32)
    batch = {k: torch.from_numpy(np.asarray(v[rows])) for k, v in method.column_arrays(toy_report_cache).items()}
    torch.manual_seed(3)
    for text in ("report", "negated") if negation else ("report",):
        got = method.locked_features(batch, text)
        ids, mask = method.text_view(batch, text)
        method.text.eval()
        with torch.no_grad():
            want = method.text(ids, mask).pooled
        method.text.train()
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    chosen = batch["sentence_choice"]
    assert 0 < int((chosen > 0).sum()) < len(rows)  # some rows cut to a sentence, some whole


def test_locked_text_refuses_methods_that_read_token_features(toy_report_cache):
    with pytest.raises(ConfigError, match="per-token text features"):
        GLoRIA(create_encoder("tiny_cnn"), GLoRIAConfig(**SMALL, locked_text=True),
               BuildContext(32, cache=toy_report_cache))


def test_cli_run_with_a_locked_tower_exports_the_text_tower_unchanged(toy_report_cache, tmp_path):
    """Run B starts its locked text tower from run A's export: B's exported tower equals A's, bit for bit, while
    B's image encoder and projections moved."""
    first = pretrain("convirt", toy_report_cache.path, tmp_path / "a", overrides=[*RUN, "max_steps=1"])
    locked = pretrain("convirt", toy_report_cache.path, tmp_path / "b",
                      overrides=[*RUN, "max_steps=4", "method.locked_text=true", f"method.text_weights={first}"])
    for name, changed in (("text", False), ("image", True)):
        a, b = (load_encoder(run, name)[0].state_dict() for run in (first, locked))
        assert any(not torch.equal(a[k], b[k]) for k in a) == changed, name
