"""Reading layers back: features in a bounding box, as of a moment."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import geopandas as gpd
import pandas as pd
import sqlalchemy as sa
from psycopg import sql

from layers import access, overlay
from layers.catalog import LAYERS, Layer, get_layer
from layers.database import cursor, get_engine

BBox = tuple[float, float, float, float]

# pandas types that keep a missing value missing (not NaN in an int column)
_DTYPES: dict[str, Any] = {
    "int": "Int64",
    "bigint": "Int64",
    "float": "Float64",
    "bool": "boolean",
    "timestamp": "datetime64[ns, UTC]",
}


def as_of(at: datetime | str | None) -> datetime | None:
    """Parse a moment; naive datetimes and strings without an offset are taken as UTC.

    Parameters
    ----------
    at
        A datetime, an ISO 8601 string, or None for "now" (current versions).

    Returns
    -------
    datetime or None
        A timezone-aware datetime, or None.

    Raises
    ------
    ValueError
        If the string is not ISO 8601, or the moment is not one in UTC (year 1 at +14:00,
        year 9999 at -14:00: Python's and PostgreSQL's range of moments).
    """
    if at is None:
        return None
    moment = datetime.fromisoformat(at) if isinstance(at, str) else at
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    try:
        moment.astimezone(UTC)  # every reader compares it in UTC
    except OverflowError:
        raise ValueError(f"{at!r} is outside the range of moments in UTC") from None
    return moment


def _check_bbox(bbox: BBox) -> BBox:
    minx, miny, maxx, maxy = (float(v) for v in bbox)
    if minx > maxx or miny > maxy:
        raise ValueError(f"bbox {bbox} has a minimum above its maximum")
    return minx, miny, maxx, maxy


def read_layer(
    layer_id: str,
    *,
    bbox: BBox | None = None,
    at: datetime | str | None = None,
    url: str | None = None,
) -> gpd.GeoDataFrame:
    """Return a layer's features as a GeoDataFrame (EPSG:4326).

    Parameters
    ----------
    layer_id
        Layer id, e.g. ``"buildings"``.
    bbox
        ``(min lon, min lat, max lon, max lat)``: only features intersecting it.
    at
        A moment: the versions valid then. None: the current versions.
    url
        Database URL; the configured one by default.

    Returns
    -------
    geopandas.GeoDataFrame
        One row per feature with ``id``, ``source``, ``valid_from``, ``valid_to``, the typed
        attributes, ``props`` (dict) and ``geometry``, ordered by id.
    """
    layer = get_layer(layer_id)
    access.require(layer.id)
    moment = overlay.read_moment(as_of(at))  # a scenario's own moment by default
    where = [overlay.valid_at(moment)]
    params: dict[str, object] = {}
    if bbox is not None:
        params.update(zip(("minx", "miny", "maxx", "maxy"), _check_bbox(bbox), strict=True))
        where.append(
            sql.SQL(
                "ST_Intersects(geom, ST_MakeEnvelope(%(minx)s, %(miny)s, %(maxx)s, %(maxy)s, 4326))"
            )
        )
    columns = ["id", "source", "valid_from", "valid_to", *layer.field_names, "props"]
    query = sql.SQL(
        "SELECT {cols}, ST_AsBinary(geom) AS geometry FROM {table} AS t WHERE {where} ORDER BY id"
    ).format(
        cols=sql.SQL(", ").join(map(sql.Identifier, columns)),
        table=access.relation(layer),  # the caller's rows and masked values
        where=sql.SQL(" AND ").join(where),
    )
    with cursor(url) as cur:
        cur.execute(query, params)
        rows = cur.fetchall()
    access.note(layer.id, count=len(rows), ids=[str(row[0]) for row in rows[:1000]])
    return frame_from_rows(layer, [*columns, "geometry"], rows)


def frame_from_rows(layer: Layer, names: Sequence[str], rows: Sequence[Any]) -> gpd.GeoDataFrame:
    """Turn rows read from a layer table into a GeoDataFrame with the catalog's types.

    Parameters
    ----------
    layer
        The layer read.
    names
        Column names of the rows, in order; ``geometry`` holds WKB in EPSG:4326.
    rows
        The rows.

    Returns
    -------
    geopandas.GeoDataFrame
        Typed attributes (missing values kept missing), timestamps in UTC.
    """
    frame = pd.DataFrame.from_records(rows, columns=list(names))
    geometry = gpd.GeoSeries.from_wkb([bytes(g) for g in frame["geometry"]], crs="EPSG:4326")
    frame["geometry"] = geometry.to_numpy()
    for spec in layer.fields:
        if spec.kind in _DTYPES and spec.name in frame:
            frame[spec.name] = frame[spec.name].astype(_DTYPES[spec.kind])
    for column in ("valid_from", "valid_to"):
        if column in frame:
            frame[column] = pd.to_datetime(frame[column], utc=True)
    return gpd.GeoDataFrame(frame, geometry="geometry", crs="EPSG:4326")


def layer_counts(*, at: datetime | str | None = None, url: str | None = None) -> dict[str, int]:
    """Count each layer's features.

    Parameters
    ----------
    at
        A moment: count the versions valid then. None: current versions.
    url
        Database URL; the configured one by default.

    Returns
    -------
    dict of str to int
        Feature count per layer id the caller may read (every layer for the owner), in
        catalog order; rows hidden from the caller are not counted.
    """
    moment = overlay.read_moment(as_of(at))  # a scenario's own moment by default
    visible = access.visible(list(LAYERS))
    parts = [
        sql.SQL("SELECT {name}, count(*) FROM {table} AS t WHERE {where}").format(
            name=sql.Literal(layer_id),
            table=access.relation(LAYERS[layer_id]),
            where=overlay.valid_at(moment),
        )
        for layer_id in visible
    ]
    if not parts:
        return {}
    query = sql.SQL(" UNION ALL ").join(parts)
    with cursor(url) as cur:
        cur.execute(query)
        counts = {str(name): int(count) for name, count in cur.fetchall()}
    return {layer_id: counts[layer_id] for layer_id in visible}


def layer_versions(layer_ids: Sequence[str], *, url: str | None = None) -> tuple[int, ...]:
    """Return the change counters of layers (from ``layer_versions``), in the given order.

    Parameters
    ----------
    layer_ids
        Layers.
    url
        Database URL; the configured one by default.

    Returns
    -------
    tuple of int
        One counter per layer.
    """
    with cursor(url) as cur:
        cur.execute(
            "SELECT layer, version FROM layer_versions WHERE layer = ANY(%s)",
            (list(layer_ids),),
        )
        found = dict(cur.fetchall())
    return tuple(int(found.get(layer_id, 0)) for layer_id in layer_ids)


def ping(url: str | None = None) -> bool:
    """Tell whether the store answers.

    Parameters
    ----------
    url
        Database URL; the configured one by default.

    Returns
    -------
    bool
        True if a trivial query succeeds.
    """
    try:
        with get_engine(url).connect() as connection:
            connection.execute(sa.text("SELECT 1"))
        return True
    except sa.exc.SQLAlchemyError:
        return False
