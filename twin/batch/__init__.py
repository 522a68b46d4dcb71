"""City-wide batch analytics on Dask: every building, every road, every station.

Each analysis cuts its features by district (dask-geopandas), runs the districts on a Dask
cluster — a :class:`distributed.LocalCluster` on this machine, or a running scheduler — or in
this process, and returns one GeoDataFrame, the same whichever runs it. Workers build the road
network from the store themselves, once per process (:mod:`twin.batch.networks`).

The names below are imported on first use, so that ``twin`` commands other than ``twin
batch`` do not pay for importing Dask.

>>> from twin.batch import accessibility, batch_client
>>> with batch_client(workers=2) as client:
...     times = accessibility(client=client)
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "OUTSIDE": "twin.batch.cluster",
    "BatchError": "twin.batch.cluster",
    "batch_client": "twin.batch.cluster",
    "accessibility": "twin.batch.buildings",
    "road_coverage": "twin.batch.coverage",
    "station_service_areas": "twin.batch.service_areas",
    "STATION_KINDS": "twin.batch.stations",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import an exported name from its module on first use."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'twin.batch' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
