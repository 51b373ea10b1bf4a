"""ConVIRT / CLIP (`cxrl pretrain convirt`): it learns to match images with their reports, exports image and text
encoders with their projections, and `cxrl evaluate --protocol zeroshot|retrieval|linear` read the run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from engine_support import TOY_FINDINGS, toy_report

from cxrl.cli import main
from cxrl.data.cache import write_cache
from cxrl.data.phantom import write_dataset
from cxrl.data.prepare import prepare
from cxrl.errors import ConfigError, DataError
from cxrl.evaluate.features import extract_features
from cxrl.evaluate.metrics import auroc
from cxrl.evaluate.protocol import run_evaluation
from cxrl.evaluate.zeroshot import class_embeddings, zeroshot_scores
from cxrl.methods.base import BuildContext
from cxrl.methods.convirt import ConVIRT, ConVIRTConfig
from cxrl.models import create_encoder
from cxrl.models.image_text import load_image_text
from cxrl.train import pretrain

pytestmark = pytest.mark.usefixtures("one_thread")
RUN = ["backbone=tiny_cnn", "image_size=32", "batch_size=16", "num_workers=0", "lr=2e-3", "warmup_epochs=0",
       "progress_bar=false", "monitor.enabled=false", "method.proj_hidden_dim=64", "method.proj_dim=32",
       "method.vocab_size=120"]


def ensemble_prompts() -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    """Per finding, the reports stating it (positive) or its absence (negative), over the others' combinations."""
    combos = [dict(zip(TOY_FINDINGS, bits, strict=True)) for bits in np.ndindex(*(2,) * len(TOY_FINDINGS))]
    return {f: tuple(tuple(toy_report(c) for c in combos if c[f] == v) for v in (1, 0)) for f in TOY_FINDINGS}


def zeroshot_auroc(run, cache) -> float:
    model = load_image_text(run)
    scores = zeroshot_scores(extract_features(model.image, cache.images[:], 32, desc=None),
                             class_embeddings(model.text, list(TOY_FINDINGS), ensemble_prompts()))
    return float(np.mean(auroc(cache.records[list(TOY_FINDINGS)].to_numpy(), scores)))


@pytest.mark.slow
def test_convirt_learns_to_tell_findings_from_the_reports_alone(toy_report_cache, tmp_path):
    """Trained on the true image-report pairs, zero-shot reads the discs; trained as long on the same reports
    shuffled across images (the control: nothing to learn from the pairing), it does not."""
    records = toy_report_cache.records.copy()
    records["findings"] = np.random.default_rng(0).permutation(records["findings"].to_numpy())
    shuffled = write_cache(tmp_path / "shuffled", np.asarray(toy_report_cache.images), records, {"source": "toy"})
    paired = pretrain("convirt", toy_report_cache.path, tmp_path / "paired", overrides=[*RUN, "max_steps=300"])
    control = pretrain("convirt", shuffled.path, tmp_path / "control", overrides=[*RUN, "max_steps=300"])
    learned, chance = zeroshot_auroc(paired, toy_report_cache), zeroshot_auroc(control, toy_report_cache)
    assert learned >= 0.8 and chance <= learned - 0.2, (learned, chance)
    print(f"zero-shot AUROC paired {learned:.3f}, shuffled {chance:.3f}")


@pytest.fixture(scope="module")
def phantom_reports(tmp_path_factory):
    """A phantom in the MIMIC layout, prepared with its reports."""
    root = tmp_path_factory.mktemp("phantom")
    write_dataset(root / "mimic", 300, size=64, layout="mimic", seed=3, workers=1)
    return prepare("mimic", root / "mimic", root / "cache", size=32, workers=1, reports=True)


@pytest.mark.slow
def test_cli_pretrains_convirt_and_evaluate_reads_every_protocol_from_the_run(phantom_reports, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["pretrain", "convirt", "--data", str(phantom_reports), "--out", str(run), *RUN, "batch_size=32",
                 "max_steps=3"]) == 0
    assert {p.name for p in run.iterdir()} >= {"encoder.safetensors", "text", "projection.safetensors"}
    assert (run / "text" / "encoder.safetensors").is_file()
    common = ["--encoder", str(run), "--data", str(phantom_reports), "--bootstrap", "20", "--embedding", "none",
              "--min-positives", "2"]
    for protocol in ("zeroshot", "retrieval", "linear"):
        assert main(["evaluate", *common, "--protocol", protocol, "--out", str(tmp_path / protocol),
                     "--fractions", "0.5,1", "--seeds", "1"]) == 0
    zeroshot, retrieval, linear = (json.loads((tmp_path / p / "metrics.json").read_text())
                                   for p in ("zeroshot", "retrieval", "linear"))
    assert [r["fraction"] for r in zeroshot["runs"]] == [0.0] and zeroshot["runs"][0]["n_train_images"] == 0
    assert zeroshot["pathologies"] == linear["pathologies"]  # the same test rows and findings: one table
    assert 0 <= zeroshot["runs"][0]["macro_auroc"] <= 1 and "five_way_accuracy" in zeroshot["runs"][0]
    gap = zeroshot["runs"][0]["modality_gap"]
    assert 0 <= gap["centroid_distance"] <= 2 and 0 <= gap["separability_auroc"] <= 1
    r = retrieval["runs"][0]
    assert r["image_to_text_recall@1"] <= r["image_to_text_recall@5"] <= r["image_to_text_recall@10"]
    assert r["chance_recall@10"] == pytest.approx(10 / r["image_to_text_n_queries"])
    assert set(r["label_match"]) == {"image_to_text", "text_to_image"} and "modality_gap" in r
    assert [s["fraction"] for s in linear["summary"].values()] == [0.5, 1.0]


def test_text_protocols_refuse_an_encoder_without_a_text_side(toy_report_cache, tmp_path):
    with pytest.raises(ConfigError, match="needs an image-text encoder"):
        run_evaluation("random", toy_report_cache.path, tmp_path / "a", protocol="zeroshot", backbone="tiny_cnn")
    simclr = pretrain("simclr", toy_report_cache.path, tmp_path / "simclr",
                      overrides=[o for o in RUN if not o.startswith("method.")] + ["max_steps=1"])
    with pytest.raises(DataError, match="no projection.safetensors"):
        run_evaluation(simclr, toy_report_cache.path, tmp_path / "b", protocol="retrieval")


def test_a_prompts_file_replaces_the_findings_it_names_and_a_bad_one_is_a_config_error(tmp_path):
    from cxrl.evaluate.protocols.zeroshot import load_prompts
    from cxrl.evaluate.zeroshot import DEFAULT_PROMPTS

    good = tmp_path / "prompts.yaml"
    good.write_text(yaml.safe_dump({"Edema": {"positive": ["edema"], "negative": ["no edema"]}}))
    prompts = load_prompts(good)
    assert prompts["Edema"] == (("edema",), ("no edema",))
    assert prompts["Cardiomegaly"] == DEFAULT_PROMPTS["Cardiomegaly"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"Edema": {"positive": []}}))
    with pytest.raises(ConfigError, match="'Edema' needs non-empty 'positive' and 'negative'"):
        load_prompts(bad)


def test_sentence_prob_feeds_the_text_tower_one_sentence_per_report_in_training_only(toy_report_cache):
    """ConVIRT's t_u: with sentence_prob 1 each training report reaches the text tower as one of its sentences
    (between [CLS] and [SEP]); in eval mode, and with the default 0, the whole report does."""
    rows = np.arange(8)

    def text_masks(prob: float, training: bool) -> tuple[torch.Tensor, dict]:
        cfg = ConVIRTConfig(proj_hidden_dim=64, proj_dim=32, vocab_size=120, sentence_prob=prob)
        method = ConVIRT(create_encoder("tiny_cnn"), cfg, BuildContext(32, cache=toy_report_cache)).train(training)
        batch = {k: torch.from_numpy(np.asarray(v[rows])) for k, v in method.column_arrays(toy_report_cache).items()}
        seen = []
        method.text.register_forward_hook(lambda module, args, out: seen.append(args[1].bool()))
        method.loss([torch.zeros(len(rows), 1, 32, 32)], batch)
        return seen[0], batch

    whole, batch = text_masks(0.0, training=True)
    assert torch.equal(whole.sum(1), batch["report_mask"].sum(1))
    assert torch.equal(text_masks(1.0, training=False)[0].sum(1), whole.sum(1))
    cut = text_masks(1.0, training=True)[0]
    sentences = batch["report_sentences"].long()
    for row in range(len(rows)):  # [CLS] + one of the row's sentences + [SEP]
        sizes = [int((sentences[row] == k).sum()) + 2 for k in range(1, int(sentences[row].max()) + 1)]
        assert len(sizes) == len(TOY_FINDINGS) and int(cut[row].sum()) in sizes
        assert cut[row, : int(cut[row].sum())].all()  # moved to the front


def test_convirt_selects_dhn_nce_or_medclip_semantic_matching_and_refuses_an_unknown_loss(toy_report_cache):
    rows = np.arange(8)

    def step(**extra) -> torch.Tensor:
        torch.manual_seed(0)
        cfg = ConVIRTConfig(proj_hidden_dim=64, proj_dim=32, vocab_size=120, **extra)
        method = ConVIRT(create_encoder("tiny_cnn"), cfg, BuildContext(32, cache=toy_report_cache))
        batch = {k: torch.from_numpy(np.asarray(v[rows])) for k, v in method.column_arrays(toy_report_cache).items()}
        labels = toy_report_cache.records[list(TOY_FINDINGS)].to_numpy(dtype=np.float32)[rows]
        if "labels" in method.columns:
            batch["labels"] = torch.from_numpy(labels)
        return method.loss([torch.randn(len(rows), 1, 32, 32, generator=torch.Generator().manual_seed(1))], batch)[0]

    info, dhn, semantic = step(), step(loss="dhn_nce", hn_beta=0.3), step(loss="semantic")
    for loss in (dhn, semantic):
        assert torch.isfinite(loss) and not torch.isclose(info, loss)
        loss.backward()
    with pytest.raises(ConfigError, match="method.loss"):
        step(loss="triplet")


def test_negation_negatives_are_the_flip_of_the_very_sentence_the_report_view_kept(toy_report_cache):
    """method.negation_negatives: with sentence_prob 1, row i's hard negative is the negation flip of the one
    sentence its report view kept ("Cardiomegaly." -> "No cardiomegaly."); whole reports flip whole; the loss
    backpropagates through both; any loss other than info_nce is refused."""
    from cxrl.data.text.negation import negate_sentence
    from cxrl.models.text_tokenizer import create_tokenizer

    rows = np.arange(8)
    cfg = ConVIRTConfig(proj_hidden_dim=64, proj_dim=32, vocab_size=120, sentence_prob=1.0, negation_negatives=True)
    method = ConVIRT(create_encoder("tiny_cnn"), cfg, BuildContext(32, cache=toy_report_cache))
    batch = {k: torch.from_numpy(np.asarray(v[rows])) for k, v in method.column_arrays(toy_report_cache).items()}
    assert {"negated_tokens", "negated_mask", "negated_sentences"} <= set(method.columns)
    tokenizer = create_tokenizer(method.tokenizer)
    (ids, mask), (flip_ids, flip_mask) = method.text_view(batch), method.text_view(batch, "negated")
    for row in range(len(rows)):
        kept = tokenizer.decode(ids[row][mask[row].bool()], skip_special_tokens=True)
        flipped = tokenizer.decode(flip_ids[row][flip_mask[row].bool()], skip_special_tokens=True)
        assert flipped == tokenizer.decode(tokenizer(negate_sentence(kept))["input_ids"], skip_special_tokens=True)
    hard = method.negation_negatives(batch)
    assert hard["hard_text"].shape == (len(rows), 32) and hard["hard_valid"].all()
    images = [torch.randn(len(rows), 1, 32, 32)]
    loss, _ = method.loss(images, batch)
    loss.backward()
    method.cfg.negation_negatives = False  # the same sentences (kept in the batch) without the hard negatives
    assert torch.isfinite(loss) and loss > method.loss(images, batch)[0]
    method.eval()  # evaluation: whole reports, no hard negatives
    whole = method.text_view(batch, "negated")[1].sum(1)
    assert torch.equal(whole, batch["negated_mask"].sum(1))
    with pytest.raises(ConfigError, match="negation_negatives"):
        ConVIRT(create_encoder("tiny_cnn"), ConVIRTConfig(negation_negatives=True, loss="dhn_nce"),
                BuildContext(32, cache=toy_report_cache))
