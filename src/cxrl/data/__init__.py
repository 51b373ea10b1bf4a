"""Data: records (one row per image), labels, image I/O, the preprocessed cache, splits."""

from cxrl.data.cache import Cache, open_cache
from cxrl.data.records import load_records

__all__ = ["Cache", "load_records", "open_cache"]
