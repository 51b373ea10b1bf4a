"""Evaluation protocols as plug-ins: one module each, registered with ``@register_protocol``. Importing this package
registers the packaged ones (``linear``, ``finetune``, ``zeroshot``, ``retrieval``, ``segmentation``,
``detection``)."""

from cxrl.evaluate.protocols import (  # noqa: F401  (registers them)
    detection,
    finetune,
    linear,
    retrieval,
    segmentation,
    zeroshot,
)
from cxrl.evaluate.protocols.base import EvalProtocol, EvalSetup, Predictions
from cxrl.evaluate.protocols.registry import PROTOCOLS, protocol_class, register_protocol, unregister_protocol

__all__ = [
    "PROTOCOLS", "EvalProtocol", "EvalSetup", "Predictions", "protocol_class", "register_protocol",
    "unregister_protocol",
]
