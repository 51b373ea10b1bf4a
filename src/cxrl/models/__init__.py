"""Image encoders (``create_encoder``), their export format and the SSL projection/prediction heads."""

from cxrl.models.encoders import Encoder, create_encoder, list_encoders
from cxrl.models.export import load_encoder, save_encoder
from cxrl.models.weights import load_weights

__all__ = ["Encoder", "create_encoder", "list_encoders", "load_encoder", "load_weights", "save_encoder"]
