"""The city store: PostGIS database, layer catalog, ingest and layer queries.

The names below are imported on first use (PEP 562 module ``__getattr__``), so that a
command importing one small module of the package (``layers.catalog``) does not pay for
geopandas and SQLAlchemy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from layers.catalog import LAYERS, Field, Layer, get_layer
    from layers.database import get_engine, upgrade
    from layers.ingest import IngestError, IngestReport, ingest
    from layers.queries import layer_counts, read_layer
    from layers.settings import TwinSettings, get_settings

_LAZY = {
    "LAYERS": "layers.catalog",
    "Field": "layers.catalog",
    "Layer": "layers.catalog",
    "get_layer": "layers.catalog",
    "get_engine": "layers.database",
    "upgrade": "layers.database",
    "IngestError": "layers.ingest",
    "IngestReport": "layers.ingest",
    "ingest": "layers.ingest",
    "layer_counts": "layers.queries",
    "read_layer": "layers.queries",
    "TwinSettings": "layers.settings",
    "get_settings": "layers.settings",
}

__all__ = [
    "LAYERS",
    "Field",
    "IngestError",
    "IngestReport",
    "Layer",
    "TwinSettings",
    "get_engine",
    "get_layer",
    "get_settings",
    "ingest",
    "layer_counts",
    "read_layer",
    "upgrade",
]


def __getattr__(name: str) -> Any:
    """Import a public name on first use (``layers.ingest``, ``layers.LAYERS`` ...)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'layers' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
