"""Fine-grained label-text alignment (`cxrl pretrain label_text`): each term by its formula, training from the CLI
lowering every term and exporting what zero-shot reads, the ablation switches changing what trains, the before/after
finding-similarity heatmap, two gloo processes equal to one, and kill-and-resume equal to never stopping."""

from __future__ import annotations

import json

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from engine_support import TOY_FINDINGS, on_two_gloo_ranks
from safetensors.torch import load_file
from test_resume import Kill

from cxrl.data.labels import PATHOLOGIES
from cxrl.errors import ConfigError
from cxrl.losses.label_text import finding_logits, orthogonality_loss
from cxrl.methods.base import BuildContext
from cxrl.methods.label_text import LabelText, LabelTextConfig
from cxrl.models import create_encoder
from cxrl.models.image_text import load_image_text
from cxrl.train import pretrain

pytestmark = pytest.mark.usefixtures("one_thread")
SMALL = dict(proj_hidden_dim=32, proj_dim=16, vocab_size=120, tiny_width=32, tiny_layers=1)
FINDINGS = [p for p in PATHOLOGIES if p in TOY_FINDINGS]  # the engine's order
RUN = ["backbone=tiny_cnn", "image_size=32", "batch_size=16", "num_workers=0", "lr=2e-3", "warmup_epochs=0",
       "progress_bar=false", "monitor.enabled=false", "log_every_n_steps=1",
       *(f"method.{k}={v}" for k, v in SMALL.items())]


def test_the_finding_logits_are_the_scaled_cosines_plus_the_bias():
    gen = torch.Generator().manual_seed(0)
    v, e, b = torch.randn(4, 5, generator=gen), torch.randn(3, 5, generator=gen), torch.randn(3, generator=gen)
    expected = torch.tensor([[float(v[i] @ e[k] / (v[i].norm() * e[k].norm())) / 0.2 + float(b[k])
                              for k in range(3)] for i in range(4)])
    torch.testing.assert_close(finding_logits(v, e, 0.2, b), expected)


def test_the_orthogonality_term_is_the_squared_frobenius_distance_to_identity_over_k_squared():
    e = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]])
    c = 1 / 2 ** 0.5  # cosine of the 45-degree pairs; rows 0 and 2 are orthogonal
    torch.testing.assert_close(orthogonality_loss(e), torch.tensor(4 * c ** 2 / 9))
    assert float(orthogonality_loss(torch.eye(3) * 5)) == 0.0


def _method(cache, **kwargs) -> LabelText:
    torch.manual_seed(0)
    return LabelText(create_encoder("tiny_cnn"), LabelTextConfig(**SMALL, **kwargs),
                     BuildContext(32, cache=cache, pathologies=FINDINGS))


def _batch(cache, method, n: int = 8) -> dict[str, torch.Tensor]:
    columns = method.column_arrays(cache)
    labels = torch.tensor(cache.records[FINDINGS].to_numpy()[:n], dtype=torch.float32)
    labels[0, 1] = float("nan")  # one unknown label: masked out of the classification term
    return {"labels": labels, **{k: torch.as_tensor(np.array(v[:n])) for k, v in columns.items()}}


@pytest.mark.parametrize("text_branch", [True, False])
def test_the_loss_is_classification_plus_weighted_orthogonality_and_contrastive_terms(toy_report_cache,
                                                                                       text_branch):
    method = _method(toy_report_cache, ortho_weight=0.3, contrastive_weight=0.7, text_branch=text_branch).eval()
    batch, views = _batch(toy_report_cache, method), [torch.randn(8, 1, 32, 32)]
    with torch.no_grad():
        total, logs = method.loss(views, batch)
        pooled = method.encoder(views[0])
        image = method.image_projection(pooled)
        prompts = F.normalize(method.text_projection(method.text(method.prompt_ids, method.prompt_mask).pooled), dim=1)
        e = torch.stack([prompts[method.prompt_average[k] > 0].mean(0) for k in range(3)])
        torch.testing.assert_close(method.initial_findings, e)  # the prompts' mean unit embeddings at build
        logits = F.normalize(image, dim=1) @ F.normalize(e, dim=1).T / 0.1 + method.finding_bias
        observed = ~batch["labels"].isnan()
        bce = F.binary_cross_entropy_with_logits(logits[observed], batch["labels"][observed])
        ortho = ((F.normalize(e, dim=1) @ F.normalize(e, dim=1).T - torch.eye(3)) ** 2).sum() / 9
    torch.testing.assert_close(logs["cls_loss"], bce)
    torch.testing.assert_close(logs["ortho_loss"], ortho)
    if text_branch:
        contrastive = method.global_loss(*method.joint(pooled, method.text_features(batch)), batch)
        torch.testing.assert_close(logs["contrastive_loss"], contrastive)
        torch.testing.assert_close(total, bce + 0.3 * ortho + 0.7 * contrastive)
    else:
        assert "contrastive_loss" not in logs and "report_tokens" not in method.columns
        torch.testing.assert_close(total, bce + 0.3 * ortho)


@pytest.mark.parametrize(("switches", "option"), [
    (dict(text_branch=False, freeze_text=False), "method.freeze_text"),
    (dict(text_branch=False, learn_temperature=True), "method.learn_temperature"),
    (dict(finding_offset=True), "method.finding_offset"),
    (dict(text_branch=False, finding_offset=True), "method.finding_offset"),
])
def test_contradictory_switches_are_refused_naming_the_option(toy_report_cache, switches, option):
    with pytest.raises(ConfigError, match=option):
        _method(toy_report_cache, **switches)


def test_label_text_trains_from_the_cli_lowering_every_term_and_writes_the_heatmap(toy_report_cache, tmp_path):
    run = pretrain("label_text", toy_report_cache.path, tmp_path / "run", overrides=[*RUN, "max_steps=60"])
    metrics = pd.read_csv(run / "logs/csv/version_0/metrics.csv")
    for column in ("train/loss", "train/cls_loss", "train/ortho_loss", "train/contrastive_loss"):
        values = metrics[column].dropna().to_numpy()
        assert values[-10:].mean() < values[:10].mean() - 0.02, (column, values[:10].mean(), values[-10:].mean())
    model = load_image_text(run)
    assert model.text(["Pleural effusion."]).shape == model.image(torch.zeros(1, 1, 32, 32)).shape == (1, 16)
    heatmap = json.loads((run / "finding_similarity.json").read_text())
    assert heatmap["findings"] == FINDINGS
    before, after = np.array(heatmap["before"]), np.array(heatmap["after"])
    assert before.shape == after.shape == (3, 3) and np.allclose(np.diag(after), 1, atol=1e-5)
    assert np.abs(after - before).max() > 0.05
    assert (run / "finding_similarity.png").stat().st_size > 1000


class Moved(pl.Callback):
    """Which towers' weights and buffers (BatchNorm statistics) differ after training from before it."""

    def on_train_start(self, trainer, pl_module) -> None:
        self.before = {part: self._state(pl_module, part) for part in ("encoder", "text")}

    def on_train_end(self, trainer, pl_module) -> None:
        self.moved = {part: any(not torch.equal(t, self.before[part][k])
                                for k, t in self._state(pl_module, part).items()) for part in self.before}

    @staticmethod
    def _state(pl_module, part: str) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in getattr(pl_module.method, part).state_dict().items()}


@pytest.mark.parametrize(("switches", "image_trains", "text_trains", "contrastive"), [
    ([], True, True, True),
    (["method.freeze_text=true"], True, False, True),
    (["method.freeze_image=true"], False, True, True),
    (["method.text_branch=false"], True, False, False),
])
def test_each_ablation_switch_changes_what_trains(toy_report_cache, tmp_path, switches, image_trains, text_trains,
                                                  contrastive):
    moved = Moved()
    run = pretrain("label_text", toy_report_cache.path, tmp_path / "run", overrides=[*RUN, *switches, "max_steps=3"],
                   callbacks=[moved])
    assert moved.moved == {"encoder": image_trains, "text": text_trains}
    logged = pd.read_csv(run / "logs/csv/version_0/metrics.csv").columns
    assert ("train/contrastive_loss" in logged) == contrastive and "train/cls_loss" in logged


def _ddp_worker(rank: int, world: int, cache_path: str, views, batch) -> dict[str, torch.Tensor]:
    from cxrl.data.cache import open_cache

    method = _method(open_cache(cache_path)).eval()
    half = len(views) // world
    mine = {k: v[rank * half:(rank + 1) * half] for k, v in batch.items()}
    return method.loss([views[rank * half:(rank + 1) * half]], mine)[1]


@pytest.mark.slow
def test_two_gloo_processes_equal_one_process(toy_report_cache, tmp_path):
    """The report term gathers (global batch); the classification and orthogonality terms are per-rank means, so
    their mean over ranks is the one-process value when every rank has as many observed labels (here all)."""
    method = _method(toy_report_cache).eval()
    batch = _batch(toy_report_cache, method)
    batch["labels"] = batch["labels"].nan_to_num(0.0)
    views = torch.randn(8, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        _, full = method.loss([views], batch)
    ranks = on_two_gloo_ranks(_ddp_worker, tmp_path, str(toy_report_cache.path), views, batch)
    for term in ("cls_loss", "ortho_loss", "contrastive_loss"):
        torch.testing.assert_close((ranks[0][term] + ranks[1][term]) / 2, full[term], msg=term)
    torch.testing.assert_close(ranks[0]["ortho_loss"], ranks[1]["ortho_loss"])  # E is the same on every rank


# The default (both towers trained: the text tower's dropout replays through the engine's per-step seeding), a frozen
# text tower with a learned offset, and the visual branch alone.
@pytest.mark.slow
@pytest.mark.parametrize("switches", [[], ["method.freeze_text=true", "method.finding_offset=true"],
                                      ["method.text_branch=false"]])
def test_kill_and_resume_equals_uninterrupted(toy_report_cache, tmp_path, switches):
    overrides = [*RUN, *switches, "max_steps=7", "checkpoint_every_n_steps=2", "deterministic=true"]
    whole = pretrain("label_text", toy_report_cache.path, tmp_path / "whole", overrides=overrides)
    with pytest.raises(RuntimeError, match="killed"):
        pretrain("label_text", toy_report_cache.path, tmp_path / "split", overrides=overrides,
                 callbacks=[Kill(at_step=4)])
    resumed = pretrain("label_text", toy_report_cache.path, tmp_path / "split", resume=True)
    for name in ("encoder.safetensors", "text/encoder.safetensors", "projection.safetensors"):
        expected, found = load_file(str(whole / name)), load_file(str(resumed / name))
        for key, tensor in expected.items():
            torch.testing.assert_close(found[key], tensor, rtol=0, atol=1e-6, msg=f"{name} {key}")
    assert json.loads((whole / "finding_similarity.json").read_text()) == json.loads(
        (resumed / "finding_similarity.json").read_text())


def test_cxrl_explain_shows_the_runs_finding_similarity_heatmap(toy_report_cache, tmp_path):
    from cxrl.explain.run import run_explain

    run = pretrain("label_text", toy_report_cache.path, tmp_path / "run", overrides=[*RUN, "max_steps=2"])
    metrics = run_explain([str(run)], toy_report_cache.path, tmp_path / "out", head="zeroshot", maps=["none"],
                          findings=["Cardiomegaly", "Edema"], n_images=1, min_positives=2)
    picture = metrics["encoders"][0]["finding_similarity"]
    assert (tmp_path / "out" / picture).read_bytes() == (run / "finding_similarity.png").read_bytes()
    assert f'src="{picture}"' in (tmp_path / "out" / "index.html").read_text()


@pytest.mark.parametrize(("blank", "expected"), [("zero", 0.0), ("nan", None)])
def test_a_finding_not_mentioned_is_a_negative_unless_blank_is_nan(toy_cache, blank, expected):
    from cxrl.train import build_data, resolve_config

    cfg = resolve_config("label_text", None, ["method.pathologies=[Cardiomegaly, Atelectasis]",
                                              f"method.blank={blank}"])
    not_mentioned = build_data(cfg, toy_cache.path).targets[:, 1]  # the toy cache has no Atelectasis label
    assert np.isnan(not_mentioned).all() if expected is None else (not_mentioned == expected).all()


def test_each_finding_averages_its_positive_prompts_and_a_finding_without_prompts_is_its_name(toy_report_cache):
    torch.manual_seed(0)
    method = LabelText(create_encoder("tiny_cnn"), LabelTextConfig(**SMALL),
                       BuildContext(32, cache=toy_report_cache, pathologies=["Cardiomegaly", "Nodule"]))
    assert method.prompt_average.gt(0).sum(1).tolist() == [3, 1]
    torch.testing.assert_close(method.prompt_average.sum(1), torch.ones(2))
    nodule = method.prompt_ids[method.prompt_average[1] > 0][0]
    assert method.text.tokenizer.decode(nodule, skip_special_tokens=True).replace(" ##", "").lower() == "nodule"
