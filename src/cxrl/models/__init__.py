"""Image encoders (``create_encoder``), text encoders (``create_text_encoder``), their export format and the SSL
projection/prediction heads."""

from cxrl.models.encoders import Encoder, create_encoder, list_encoders
from cxrl.models.export import load_encoder, save_encoder, save_named_encoder
from cxrl.models.text import TextEncoder, TextFeatures, create_text_encoder, list_text_encoders
from cxrl.models.text_export import load_text_encoder, save_text_encoder
from cxrl.models.weights import load_weights

__all__ = [
    "Encoder",
    "TextEncoder",
    "TextFeatures",
    "create_encoder",
    "create_text_encoder",
    "list_encoders",
    "list_text_encoders",
    "load_encoder",
    "load_text_encoder",
    "load_weights",
    "save_encoder",
    "save_named_encoder",
    "save_text_encoder",
]
