"""GeoJSON for answers the twin computes (one-map, traces, incidents): frames to collections."""

from __future__ import annotations

import json
import math
from datetime import date, datetime
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely


def _default(value: Any) -> Any:
    if isinstance(value, datetime | date | pd.Timestamp):
        return value.isoformat()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON")


def feature_collection(frame: gpd.GeoDataFrame, *, limit: int | None = None) -> dict[str, Any]:
    """Encode a GeoDataFrame (EPSG:4326) as a FeatureCollection, the first ``limit`` features.

    Parameters
    ----------
    frame
        Features; a ``props`` column of dicts stays nested.
    limit
        How many to return; ``numberMatched`` says how many there were.

    Returns
    -------
    dict
        The collection, with ``numberMatched`` and ``numberReturned``.
    """
    part = frame if limit is None else frame.head(limit)
    collection = json.loads(part.to_json(na="null", drop_id=True, default=_default))
    collection["numberMatched"] = len(frame)
    collection["numberReturned"] = len(part)
    return collection


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Encode a table as JSON records (NaN and missing values as null)."""
    out = json.loads(frame.to_json(orient="records", date_format="iso", default_handler=str))
    return [{k: _finite(v) for k, v in row.items()} for row in out]


def geometry(value: shapely.Geometry | None) -> dict[str, Any] | None:
    """Encode one geometry (None stays None)."""
    if value is None or shapely.is_empty(value):
        return None
    encoded: dict[str, Any] = json.loads(shapely.to_geojson(value))
    return encoded


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value
