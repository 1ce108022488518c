"""cdul: CLIP-driven unsupervised multi-label image classification.

The Python interface (``cdul.open_store``, ``cdul.extract``, ``cdul.train``,
``cdul.export``, ``cdul.CdulError``) lives in ``cdul.api`` and is loaded on first use
(PEP 562), so ``import cdul`` stays cheap and the package's lowest layer imports nothing above it.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

API = ("CdulError", "ExportResult", "ExtractSummary", "TrainSummary", "export", "extract", "open_store", "train")


def __getattr__(name: str):
    if name in API:
        return getattr(importlib.import_module("cdul.api"), name)
    raise AttributeError(f"module 'cdul' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *API])
