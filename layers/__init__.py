"""The city store: PostGIS database, layer catalog, ingest and layer queries."""

from layers.catalog import LAYERS, Field, Layer, get_layer
from layers.database import get_engine, upgrade
from layers.ingest import IngestError, IngestReport, ingest
from layers.queries import layer_counts, read_layer
from layers.settings import TwinSettings, get_settings

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
