"""cxrl: chest X-ray representation learning.

Data flows one way: source files -> records -> cache -> views -> encoders -> method -> checkpoint,
then evaluators read an exported encoder and a cache. Heavy modules (torch) are imported lazily.
"""

__version__ = "0.1.0"
