"""Negation-flipped reports (NegCLIP-style hard negatives): each sentence's polarity reversed, one sentence for one,
read back reversed by the report labeler; and their tokens cached beside the report tokens."""

from __future__ import annotations

import numpy as np
import pytest

from cxrl.data.cache import open_cache
from cxrl.data.phantom import write_dataset
from cxrl.data.prepare import prepare
from cxrl.data.text.labeler import label_report
from cxrl.data.text.negation import negate_report, negate_sentence
from cxrl.data.text.sentences import split_sentences
from cxrl.data.tokens import load_tokens, report_texts, tokenize_reports

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("sentence, flipped", [
    ("No pneumothorax.", "Pneumothorax."),
    ("There is no pleural effusion.", "There is pleural effusion."),
    ("No evidence of pneumonia.", "Pneumonia."),
    ("Pneumothorax is not seen.", "There is pneumothorax."),
    ("Heart size is normal.", "There is cardiomegaly."),
    ("There is mild mediastinal widening.", "No mediastinal widening."),
    ("Possible pneumonia.", "No pneumonia."),
    ("No consolidation, effusion or pneumothorax.", "Consolidation, effusion and pneumothorax."),
    ("No focal consolidation, no definite effusion seen.", "Focal consolidation, definite effusion seen."),
    ("Small left pneumothorax, no effusion.", "No pneumothorax, but there is pleural effusion."),
    ("The lungs are well aerated.", "The lungs are well aerated."),
])
def test_each_sentence_affirms_what_it_denied_and_denies_what_it_stated(sentence, flipped):
    assert negate_sentence(sentence) == flipped


def test_a_report_naming_no_finding_has_no_flip():
    assert negate_report("The lungs are well aerated. Visualized bones are unremarkable.") is None
    assert negate_report(None) is None


@pytest.fixture(scope="module")
def phantom_cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("negation")
    write_dataset(root / "phantom", 80, size=32, layout="mimic", seed=11, patients=40)
    return open_cache(prepare("mimic", root / "phantom", root / "cache", size=32, reports=True))


def test_the_labeler_reads_every_flipped_phantom_report_with_its_polarities_reversed(phantom_cache):
    """Over 80 phantom reports (findings + impression): a finding stated or hedged in the report is denied in its
    flip, a denied one is stated, an unmentioned one stays unmentioned; and the flip keeps the sentence count."""
    texts = report_texts(phantom_cache.records).dropna()
    checked = 0
    for text in texts:
        flip = negate_report(text)
        assert flip is not None and len(split_sentences(flip)) == len(split_sentences(text))
        before, after = label_report(text), label_report(flip)
        for finding, label in before.items():
            if finding == "No Finding":
                continue
            want = np.nan if np.isnan(label) else (1.0 if label == 0 else 0.0)
            assert after[finding] == want or (np.isnan(want) and np.isnan(after[finding])), (text, flip, finding)
            checked += not np.isnan(label)
    assert checked > 200


def test_negated_tokens_are_cached_in_their_own_folder_row_for_row(phantom_cache):
    from cxrl.data.tokens import cache_tokenizer
    from cxrl.models.text_tokenizer import create_tokenizer

    tokenizer_dir = cache_tokenizer(phantom_cache.path, 300)
    plain = load_tokens(tokenize_reports(phantom_cache.path, tokenizer_dir, 128))
    negated = load_tokens(tokenize_reports(phantom_cache.path, tokenizer_dir, 128, variant="negated"))
    assert negated.path != plain.path and negated.path.name.endswith("-negated")
    tokenizer = create_tokenizer(tokenizer_dir)
    for row, text in enumerate(report_texts(phantom_cache.records)):
        flip = negate_report(text)
        want = tokenizer(flip, truncation=True, max_length=128)["input_ids"] if flip else []
        assert negated.ids[row, : negated.lengths[row]].tolist() == want


def test_changed_flip_rules_rewrite_the_cached_negated_tokens(phantom_cache, monkeypatch):
    """The negated tokens are keyed by the rewrite rules' code: tokens of an older flip are never read back."""
    from cxrl.data import tokens as tokens_module
    from cxrl.data.tokens import cache_tokenizer

    tokenizer_dir = cache_tokenizer(phantom_cache.path, 300)
    folder = tokenize_reports(phantom_cache.path, tokenizer_dir, 64, variant="negated")
    written = (folder / "tokens.npy").stat().st_mtime_ns
    tokenize_reports(phantom_cache.path, tokenizer_dir, 64, variant="negated")
    assert (folder / "tokens.npy").stat().st_mtime_ns == written  # same rules: reused
    monkeypatch.setattr(tokens_module, "_variant_rules_sha256", lambda: "0" * 64)
    tokenize_reports(phantom_cache.path, tokenizer_dir, 64, variant="negated")
    assert (folder / "tokens.npy").stat().st_mtime_ns != written
