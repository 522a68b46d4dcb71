"""One map: one spatial question, every layer answers.

Around a point (a radius), within an area, or along a line (a buffer): the features of any
subset of layers, current or as of a moment, filtered per layer by CQL2 text, each with its
distance from the point or line and how much of it lies inside (m for lines, m² for areas);
and a summary: counts per layer and kind, lengths per network or class, buildings and their
population. Per district, :func:`district_stats` gives the same figures for every district.

Whether a feature is within a radius or buffer is decided on the ellipsoid (PostGIS
geography); distances and the parts inside are then measured in the city's metric CRS (a UTM
or Gauss-Kruger zone: within 0.04% of the ellipsoid), where the radius or buffer is drawn.
"""

from __future__ import annotations

import contextvars
import json
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypeVar

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from psycopg import sql
from pyproj import Geod, Transformer

from layers import access, overlay
from layers.catalog import LAYERS, Layer, get_layer
from layers.cql2 import FilterError, to_sql, too_many_vertices
from layers.database import cursor
from layers.errors import MissingInputError, ParameterError
from layers.queries import as_of, frame_from_rows
from layers.settings import get_settings

T = TypeVar("T")

#: Largest radius or buffer accepted (m).
MAX_RADIUS_M = 20_000.0
#: Most features returned per layer when a limit is asked.
MAX_LIMIT = 10_000
#: Largest area accepted for ``within`` (km²).
MAX_AREA_KM2 = 1_000.0
#: The attribute a layer's features are counted by in the summary.
KIND_OF = {
    "roads": "class",
    "pipelines": "network",
    "pipe_nodes": "kind",
    "power_lines": "kind",
    "power_nodes": "kind",
    "cameras": "status",
    "resources": "kind",
    "buildings": "use",
    "districts": "level",
    "incidents": "kind",
    "closures": "kind",
    "signals": "program",
    "intersections": "signalised",
}
_LINES = ("LineString", "MultiLineString")
_AREAS = ("Polygon", "MultiPolygon")
Shape = Literal["around", "within", "along"]


class OneMapError(ParameterError):
    """A one-map question that cannot be asked as given."""


#: How to supply districts, for every analysis that needs them.
DISTRICTS_REMEDY = (
    "import them with `twin ingest districts FILE` (polygons with a name and an admin level), "
    "or use a grid of cells (网格) as districts: `twin city init --district-grid 500` "
    "(cells of 500 m; layers.grids.district_grid)"
)


@dataclass(frozen=True)
class OneMap:
    """The answer of every layer asked to one spatial question.

    Attributes
    ----------
    shape
        ``around``, ``within`` or ``along``.
    area
        The area asked about (EPSG:4326).
    features
        Per layer, its features (EPSG:4326) with ``distance_m`` (from the point, line or
        area) and ``inside`` (length in m of a line, area in m² of a polygon inside the area;
        missing for points), nearest first.
    summary
        Counts per layer and kind, lengths per kind, buildings and population.
    """

    shape: str
    area: shapely.Geometry
    features: dict[str, gpd.GeoDataFrame] = field(repr=False)
    summary: dict[str, Any]


def around(
    point: tuple[float, float],
    radius_m: float,
    *,
    layers: Sequence[str] | None = None,
    at: datetime | str | None = None,
    filters: Mapping[str, str] | None = None,
    url: str | None = None,
    limit: int | None = None,
) -> OneMap:
    """Ask every layer what lies within a radius of a point.

    Parameters
    ----------
    point
        ``(lon, lat)``.
    radius_m
        Radius (m), at most 20 km.
    layers
        Layer ids to ask; every layer by default.
    at
        A moment: the features valid then. None: the current ones.
    filters
        Per layer, a CQL2-text filter (``{"buildings": "height_m > 30"}``).
    url
        Database URL; the configured one by default.
    limit
        Return only the nearest ``limit`` features of each layer (the summary still covers
        them all); all by default.

    Returns
    -------
    OneMap
        Features per layer and the summary.
    """
    reference, area = _circle(point, radius_m)
    return _ask("around", reference, area, radius_m, layers, at, filters, url, limit)


def within(
    area: shapely.Geometry,
    *,
    layers: Sequence[str] | None = None,
    at: datetime | str | None = None,
    filters: Mapping[str, str] | None = None,
    url: str | None = None,
    limit: int | None = None,
) -> OneMap:
    """Ask every layer what lies in an area (a polygon, lon/lat).

    Parameters
    ----------
    area
        Polygon or MultiPolygon (EPSG:4326), valid, at most 1,000 km².
    layers, at, filters, url, limit
        As for :func:`around`.

    Returns
    -------
    OneMap
        Features per layer (``distance_m`` 0 inside, else from the area) and the summary.
    """
    _check_area(area)
    return _ask("within", area, area, 0.0, layers, at, filters, url, limit)


def along(
    line: shapely.Geometry,
    buffer_m: float,
    *,
    layers: Sequence[str] | None = None,
    at: datetime | str | None = None,
    filters: Mapping[str, str] | None = None,
    url: str | None = None,
    limit: int | None = None,
) -> OneMap:
    """Ask every layer what lies within a distance of a line (a route, a main, a street).

    Parameters
    ----------
    line
        LineString or MultiLineString (EPSG:4326).
    buffer_m
        Distance either side (m), at most 20 km.
    layers, at, filters, url, limit
        As for :func:`around`.

    Returns
    -------
    OneMap
        Features per layer, with the distance from the line, and the summary.
    """
    _check_line(line, buffer_m)
    return _ask("along", line, _buffer(line, buffer_m), buffer_m, layers, at, filters, url, limit)


def _circle(point: Sequence[float], radius_m: float) -> tuple[shapely.Point, shapely.Geometry]:
    """Check ``point`` and ``radius_m`` and draw the circle :func:`around` asks in."""
    reference = shapely.Point(_lonlat(point, "point"))
    _check_distance(radius_m, "radius_m")
    return reference, _buffer(reference, radius_m)


def _question(
    reference: shapely.Geometry,
    area: shapely.Geometry,
    distance_m: float,
    layers: Sequence[str] | None,
    at: datetime | str | None,
    filters: Mapping[str, str] | None,
    limit: int | None,
) -> tuple[
    list[Layer],
    dict[str, tuple[sql.Composable, list[Any]]],
    datetime | None,
    tuple[float, float, float, float],
    Transformer,
    shapely.Geometry,
    shapely.Geometry,
]:
    """Check what :func:`_ask` and :func:`_geojson_answer` are asked and set their search up.

    Returns ``(layers asked, their filters, moment, lon/lat envelope of the area with a
    margin, lon/lat -> metric transformer, reference and area in the metric CRS)``.
    """
    if limit is not None and not 0 <= limit <= MAX_LIMIT:
        raise OneMapError(f"limit must be between 0 and {MAX_LIMIT}", parameter="limit")
    asked = _layers(layers)
    conditions = _filters(filters or {}, asked)
    moment = _moment(at)
    margin = (distance_m * 0.01 + 1.0) / 100_000  # degrees, more than the drawn area misses
    xmin, ymin, xmax, ymax = (float(v) for v in shapely.bounds(area))
    envelope = (xmin - margin, ymin - margin, xmax + margin, ymax + margin)
    forward = _transformers()[0]
    return (
        asked,
        conditions,
        moment,
        envelope,
        forward,
        _to_metric(reference, forward),
        _to_metric(area, forward),
    )


def _ask(
    shape: Shape,
    reference: shapely.Geometry,
    area: shapely.Geometry,
    distance_m: float,
    layers: Sequence[str] | None,
    at: datetime | str | None,
    filters: Mapping[str, str] | None,
    url: str | None,
    limit: int | None,
) -> OneMap:
    asked, conditions, moment, envelope, forward, metric_reference, metric_area = _question(
        reference, area, distance_m, layers, at, filters, limit
    )
    shapely.prepare(metric_area)

    # with a limit, every feature is read lean (id, kind, geometry) for the summary and the
    # ranking, and only the nearest ``limit`` whole; threads only wait on the database
    lean = limit is not None
    columns = {layer.id: _lean_columns(layer) if lean else _columns(layer) for layer in asked}

    def fetch(layer: Layer) -> list[Any]:
        query, params = _layer_query(
            layer,
            columns[layer.id],
            shape,
            reference,
            area,
            envelope,
            distance_m,
            moment,
            conditions.get(layer.id),
        )
        with cursor(url) as cur:
            cur.execute(query, params)
            return cur.fetchall()

    with ThreadPoolExecutor(max_workers=_WORKERS) as pool:
        fetched = _in_context(pool, fetch, asked)
    if not lean:
        features = {}
        measured = {}
        for layer, rows in zip(asked, fetched, strict=True):
            frame = frame_from_rows(layer, [*columns[layer.id], "geometry"], rows)
            kind = KIND_OF.get(layer.id)
            found = _measure(
                frame["id"].to_numpy(dtype=object),
                frame[kind].to_numpy(dtype=object) if kind else None,
                frame["population"].to_numpy(dtype=object) if layer.id == "buildings" else None,
                frame.geometry.to_numpy(),
                metric_reference,
                metric_area,
                forward,
            )
            measured[layer.id] = found
            features[layer.id] = _with_measures(frame.take(found.order), found)
        return OneMap(shape=shape, area=area, features=features, summary=_summary(measured))

    measured = {
        layer.id: _measure_rows(layer, rows, metric_reference, metric_area, forward)
        for layer, rows in zip(asked, fetched, strict=True)
    }

    def fetch_whole(layer: Layer) -> list[Any]:
        ids = measured[layer.id].ids[measured[layer.id].order[:limit]]
        with cursor(url) as cur:
            cur.execute(*_rows_by_id(layer, list(ids), moment))
            return cur.fetchall()

    with ThreadPoolExecutor(max_workers=_WORKERS) as pool:
        wholes = _in_context(pool, fetch_whole, asked)
    features = {}
    for layer, rows in zip(asked, wholes, strict=True):
        found = measured[layer.id]
        whole = frame_from_rows(layer, [*_columns(layer), "geometry"], rows)
        position = {str(i): k for k, i in enumerate(whole["id"])}
        # a feature retired between the two reads is left out of the list (not the summary)
        nearest = np.array(
            [r for r in found.order[:limit] if str(found.ids[r]) in position], dtype=np.int64
        )
        ordered = whole.take([position[str(i)] for i in found.ids[nearest]])
        features[layer.id] = _with_measures(ordered, found, nearest)
    return OneMap(shape=shape, area=area, features=features, summary=_summary(measured))


def around_geojson(
    point: tuple[float, float],
    radius_m: float,
    *,
    layers: Sequence[str] | None = None,
    at: datetime | str | None = None,
    filters: Mapping[str, str] | None = None,
    url: str | None = None,
    limit: int = 100,
) -> bytes:
    """Answer :func:`around` as GeoJSON text that PostgreSQL writes (for the HTTP API).

    The same question, features and summary as :func:`around`, encoded without a
    GeoDataFrame: each layer's nearest ``limit`` features come from PostgreSQL as one
    FeatureCollection text (``ST_AsGeoJSON``, 15 decimals; properties in the columns' order,
    then ``distance_m`` and ``inside``), with ``numberMatched`` (every feature found) and
    ``numberReturned``.

    Parameters
    ----------
    point, radius_m, layers, at, filters, url
        As for :func:`around`.
    limit
        Features returned per layer (0 to 10,000); the summary covers them all.

    Returns
    -------
    bytes
        UTF-8 JSON: ``{"shape", "area", "summary", "layers": {id: FeatureCollection}}``.

    Raises
    ------
    OneMapError
        As :func:`around` raises it.
    """
    reference, area = _circle(point, radius_m)
    return _geojson_answer("around", reference, area, radius_m, layers, at, filters, url, limit)


def within_geojson(
    area: shapely.Geometry,
    *,
    layers: Sequence[str] | None = None,
    at: datetime | str | None = None,
    filters: Mapping[str, str] | None = None,
    url: str | None = None,
    limit: int = 100,
) -> bytes:
    """Answer :func:`within` as GeoJSON text that PostgreSQL writes (see :func:`around_geojson`).

    Parameters
    ----------
    area, layers, at, filters, url
        As for :func:`within`.
    limit
        Features returned per layer.

    Returns
    -------
    bytes
        UTF-8 JSON, as :func:`around_geojson` returns it.

    Raises
    ------
    OneMapError
        As :func:`within` raises it.
    """
    _check_area(area)
    return _geojson_answer("within", area, area, 0.0, layers, at, filters, url, limit)


def along_geojson(
    line: shapely.Geometry,
    buffer_m: float,
    *,
    layers: Sequence[str] | None = None,
    at: datetime | str | None = None,
    filters: Mapping[str, str] | None = None,
    url: str | None = None,
    limit: int = 100,
) -> bytes:
    """Answer :func:`along` as GeoJSON text that PostgreSQL writes (see :func:`around_geojson`).

    Parameters
    ----------
    line, buffer_m, layers, at, filters, url
        As for :func:`along`.
    limit
        Features returned per layer.

    Returns
    -------
    bytes
        UTF-8 JSON, as :func:`around_geojson` returns it.

    Raises
    ------
    OneMapError
        As :func:`along` raises it.
    """
    _check_line(line, buffer_m)
    area = _buffer(line, buffer_m)
    return _geojson_answer("along", line, area, buffer_m, layers, at, filters, url, limit)


def _geojson_answer(
    shape: Shape,
    reference: shapely.Geometry,
    area: shapely.Geometry,
    distance_m: float,
    layers: Sequence[str] | None,
    at: datetime | str | None,
    filters: Mapping[str, str] | None,
    url: str | None,
    limit: int,
) -> bytes:
    """Answer as :func:`_ask` does with a limit, the features' GeoJSON written by PostgreSQL.

    Every feature is read lean and measured as :func:`_ask` measures it (the same summary,
    distances and order); then, per layer, PostgreSQL writes the FeatureCollection of the
    nearest ``limit`` with their measures, which Python joins into the answer unparsed.
    """
    asked, conditions, moment, envelope, forward, metric_reference, metric_area = _question(
        reference, area, distance_m, layers, at, filters, limit
    )

    def answer(group: list[Layer]) -> list[tuple[_Measured, str]]:
        """Per layer of the group, on one connection: read lean, measure, write GeoJSON."""
        # a prepared polygon of this thread's own: GEOS prepared geometries are not
        # thread-safe (libgeos/geos#825)
        drawn = shapely.from_wkb(shapely.to_wkb(metric_area))
        shapely.prepare(drawn)
        out = []
        with cursor(url) as cur:
            for layer in group:
                cur.execute(
                    *_layer_query(
                        layer,
                        _lean_columns(layer),
                        shape,
                        reference,
                        area,
                        envelope,
                        distance_m,
                        moment,
                        conditions.get(layer.id),
                    )
                )
                found = _measure_rows(layer, cur.fetchall(), metric_reference, drawn, forward)
                nearest = found.order[:limit]
                cur.execute(
                    *_collection_query(
                        layer,
                        [str(i) for i in found.ids[nearest]],
                        [float(v) for v in found.distance[nearest]],
                        [None if np.isnan(v) else float(v) for v in found.inside[nearest]],
                        len(found.ids),
                        moment,
                    )
                )
                row = cur.fetchone()
                assert row is not None  # an aggregate answers one row
                out.append((found, str(row[0])))
        return out

    # the layers dealt out to the workers in turn; each measures while the other's server
    # works (shapely and the database release the GIL)
    groups = [asked[k::_WORKERS] for k in range(_WORKERS)]
    with ThreadPoolExecutor(max_workers=_WORKERS) as pool:
        futures = [pool.submit(contextvars.copy_context().run, answer, g) for g in groups]
        answered = {
            layer.id: result
            for group, future in zip(groups, futures, strict=True)
            for layer, result in zip(group, future.result(), strict=True)
        }
    measured = {layer.id: answered[layer.id][0] for layer in asked}
    collections = [answered[layer.id][1] for layer in asked]
    head = {
        "shape": shape,
        "area": json.loads(shapely.to_geojson(area)),
        "summary": _summary(measured),
    }
    layers_text = ",".join(
        f"{json.dumps(layer.id)}:{text}" for layer, text in zip(asked, collections, strict=True)
    )
    return (
        json.dumps(head, separators=(",", ":"))[:-1] + ',"layers":{' + layers_text + "}}"
    ).encode()


def _measure_rows(
    layer: Layer,
    rows: list[Any],
    metric_reference: shapely.Geometry,
    metric_area: shapely.Geometry,
    forward: Transformer,
) -> _Measured:
    """Measure a layer's lean rows (:func:`_lean_columns`, then the geometry's WKB)."""
    kind = KIND_OF.get(layer.id)
    width = len(_lean_columns(layer)) + 1
    values = list(zip(*rows, strict=True)) if rows else [()] * width
    return _measure(
        np.asarray(values[0], dtype=object),
        np.asarray(values[1], dtype=object) if kind else None,
        np.asarray(values[-2], dtype=object) if layer.id == "buildings" else None,
        shapely.from_wkb(np.asarray([bytes(g) for g in values[-1]], dtype=object)),
        metric_reference,
        metric_area,
        forward,
    )


def _collection_query(
    layer: Layer,
    ids: list[str],
    distances: list[float],
    inside: list[float | None],
    matched: int,
    moment: datetime | None,
) -> tuple[sql.Composed, list[Any]]:
    """Write one layer's FeatureCollection text of the given features, in the given order.

    Properties in the columns' order (as the layer's frame has them; moments in UTC as
    ``isoformat`` gives them), then ``distance_m`` and ``inside`` as measured; a feature
    retired since it was measured is left out of the list (``numberReturned`` counts what is
    there).
    """
    moments = {"valid_from", "valid_to"} | {f.name for f in layer.fields if f.kind == "timestamp"}
    cols = [
        sql.SQL(_ISO).format(c=sql.Identifier("t", c), name=sql.Identifier(c))
        if c in moments
        else sql.Identifier("t", c)
        for c in _columns(layer)
    ]
    query = sql.SQL(_COLLECTION).format(
        cols=sql.SQL(", ").join(cols),
        table=access.relation(layer),  # the caller's rows and masked values
        when=overlay.valid_at(moment, table="t"),
    )
    return query, [matched, ids, distances, inside, ids]


# a moment as Python's isoformat() writes it (in UTC; six digits of fraction when there is
# one), whatever the session's time zone
_ISO = """
CASE WHEN {c} IS NOT NULL THEN
    to_char({c} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
    || CASE WHEN date_part('microseconds', {c})::bigint %% 1000000 <> 0
            THEN to_char({c} AT TIME ZONE 'UTC', '.US') ELSE '' END
    || '+00:00'
END AS {name}
"""
_COLLECTION = """
SELECT json_build_object(
    'type', 'FeatureCollection',
    'features', coalesce(json_agg(json_build_object(
        'type', 'Feature',
        'properties', row_to_json(p),
        'geometry', ST_AsGeoJSON(t.geom, 15)::json
    ) ORDER BY o.k), '[]'::json),
    'numberMatched', %s::bigint,
    'numberReturned', count(t.id))::text
FROM unnest(%s::text[], %s::float8[], %s::float8[]) WITH ORDINALITY AS o(id, distance_m, inside, k)
JOIN (SELECT * FROM {table} AS s WHERE s.id = ANY(%s::text[])) AS t ON t.id = o.id AND {when},
LATERAL (SELECT {cols}, o.distance_m, o.inside) AS p
"""
# the ids are given to the relation itself too: in a scenario it is a union, and the condition
# reaches each of its branches (the id index), where a join onto it read each layer whole
# (bench/scenarios.py, GET /onemap/around)


@dataclass(frozen=True)
class _Measured:
    """One layer's answer as arrays, in row order; ``order`` sorts it nearest first."""

    ids: np.ndarray
    kinds: np.ndarray | None
    population: np.ndarray | None
    distance: np.ndarray
    inside: np.ndarray
    order: np.ndarray


def _with_measures(
    frame: gpd.GeoDataFrame, found: _Measured, rows: np.ndarray | None = None
) -> gpd.GeoDataFrame:
    """Give rows (already nearest first) their distance and inside measures."""
    picked = found.order if rows is None else rows
    out = frame.reset_index(drop=True).assign(
        distance_m=found.distance[picked], inside=found.inside[picked]
    )
    return gpd.GeoDataFrame(out, geometry="geometry", crs="EPSG:4326")


def _lean_columns(layer: Layer) -> list[str]:
    """Name the columns the summary needs of every feature: id, kind, population."""
    kind = KIND_OF.get(layer.id)
    return ["id", *([kind] if kind else []), *(["population"] if layer.id == "buildings" else [])]


def _rows_by_id(
    layer: Layer, ids: list[str], moment: datetime | None
) -> tuple[sql.Composed, list[Any]]:
    query = sql.SQL(
        "SELECT {cols}, ST_AsBinary(geom) FROM {table} AS t WHERE {when} AND id = ANY(%s)"
    )
    composed = query.format(
        cols=sql.SQL(", ").join(map(sql.Identifier, _columns(layer))),
        table=access.relation(layer),
        when=overlay.valid_at(moment),
    )
    return composed, [ids]


def _measure(
    ids: np.ndarray,
    kinds: np.ndarray | None,
    population: np.ndarray | None,
    geometry: np.ndarray,
    reference: shapely.Geometry,
    area: shapely.Geometry,
    forward: Transformer,
) -> _Measured:
    """Measure in the metric CRS: distance, and the m of line or m² of area inside."""
    metric = _to_metric(geometry, forward)
    distance = shapely.distance(metric, reference)
    dimension = shapely.get_dimensions(metric)
    inside = np.full(len(ids), np.nan)
    extended = dimension > 0
    if extended.any():
        part = metric[extended]
        cut = part.copy()
        edge = ~shapely.contains_properly(area, part)
        cut[edge] = shapely.intersection(part[edge], area)
        lines = dimension[extended] == 1
        inside[extended] = np.where(lines, shapely.length(cut), shapely.area(cut))
    order = np.argsort(distance, kind="stable")  # rows come ordered by id: ties stay so
    return _Measured(ids, kinds, population, distance, inside, order)


def _layer_query(
    layer: Layer,
    columns: list[str],
    shape: Shape,
    reference: shapely.Geometry,
    area: shapely.Geometry,
    envelope: tuple[float, float, float, float],
    distance_m: float,
    moment: datetime | None,
    condition: tuple[sql.Composable, list[Any]] | None,
) -> tuple[sql.Composed, list[Any]]:
    extra, extra_params = condition if condition else (sql.SQL("TRUE"), [])
    if shape == "within":
        query = sql.SQL(
            "SELECT {cols}, ST_AsBinary(geom) FROM {table} AS t "
            "WHERE {when} AND geom && ST_MakeEnvelope(%s, %s, %s, %s, 4326) "
            "AND ST_Intersects(geom, ST_GeomFromWKB(%s, 4326)) AND ({extra}) ORDER BY id"
        )
        params = [*envelope, shapely.to_wkb(area), *extra_params]
    else:
        # Within the distance on the ellipsoid (as ST_DWithin on geography decides), found
        # fast: Web Mercator (the stored, indexed geom_3857) stretches distances by between
        # sec(lat) and about 1% more, so a feature within the inner planar radius is in, one
        # beyond the outer radius out, and only those in the ring between are measured on
        # the ellipsoid.
        inner, outer = _mercator_radii(area, distance_m)
        query = sql.SQL(
            "SELECT {cols}, ST_AsBinary(geom) FROM {table} AS t, "
            "(SELECT ST_Transform(r, 3857) AS m, r::geography AS g "
            " FROM ST_GeomFromWKB(%s, 4326) AS r) AS ref "
            "WHERE {when} AND ST_DWithin(geom_3857, ref.m, %s) "
            "AND (ST_DWithin(geom_3857, ref.m, %s) OR ST_DWithin(geom::geography, ref.g, %s)) "
            "AND ({extra}) ORDER BY id"
        )
        params = [
            shapely.to_wkb(reference),
            outer,
            inner,
            distance_m,
            *extra_params,
        ]
    composed = query.format(
        cols=sql.SQL(", ").join(map(sql.Identifier, columns)),
        table=access.relation(layer),  # the caller's rows and masked values
        when=overlay.valid_at(moment),
        extra=extra,
    )
    return composed, params


def _mercator_radii(area: shapely.Geometry, distance_m: float) -> tuple[float, float]:
    """Planar Web Mercator radii that surely hold, and surely exceed, a true distance."""
    _, south, _, north = (float(v) for v in shapely.bounds(area))
    latitudes = np.radians([min(abs(south), abs(north)), max(abs(south), abs(north))])
    if south < 0 < north:
        latitudes[0] = 0.0
    secant = 1 / np.cos(np.minimum(latitudes, np.radians(85.0)))
    return float(distance_m * secant[0] * 0.99), float(distance_m * secant[1] * 1.01 + 1.0)


def _summary(measured: Mapping[str, _Measured]) -> dict[str, Any]:
    """Sum up: counts per layer and kind, lengths inside per kind, buildings and population."""
    counts: dict[str, int] = {}
    kinds: dict[str, dict[str, int]] = {}
    lengths: dict[str, dict[str, float]] = {}
    for layer_id, found in measured.items():
        counts[layer_id] = len(found.ids)
        if found.kinds is None or not len(found.ids):
            continue
        keys = np.array(
            ["unknown" if k is None or k is pd.NA else str(k) for k in found.kinds], dtype=object
        )
        names, index = np.unique(keys, return_inverse=True)
        tally = np.bincount(index, minlength=len(names))
        kinds[layer_id] = {str(n): int(c) for n, c in zip(names, tally, strict=True)}
        if get_layer(layer_id).storage_type in _LINES:
            sums = np.bincount(index, weights=np.nan_to_num(found.inside), minlength=len(names))
            lengths[layer_id] = {
                str(n): round(float(v), 1) for n, v in zip(names, sums, strict=True)
            }
    summary: dict[str, Any] = {"counts": counts, "kinds": kinds, "lengths_m": lengths}
    if "buildings" in measured:
        b = measured["buildings"]
        people = pd.to_numeric(pd.Series(b.population, dtype=object), errors="coerce")
        summary["buildings"] = {
            "count": len(b.ids),
            "population": int(people.fillna(0).sum()),
            "footprint_inside_m2": round(float(np.nansum(b.inside)), 1),
        }
    return summary


def district_stats(*, at: datetime | str | None = None, url: str | None = None) -> pd.DataFrame:
    """Figures per district: counts and lengths per layer and kind, buildings, population.

    Each district is computed on its own (a road on a border counts in both wards).

    Parameters
    ----------
    at
        A moment; the current features by default.
    url
        Database URL; the configured one by default.

    Returns
    -------
    pandas.DataFrame
        One row per district (``id``, ``name``, ``level``, ``area_km2``, ``population``,
        ``buildings``, ``building_population``), then ``<layer>_count`` per point layer,
        ``<layer>.<kind>_count`` for each kind, and ``<layer>.<kind>_m`` lengths per line
        layer and kind.

    Raises
    ------
    MissingInputError
        If there are no districts (then, or visible to the caller): the message says how to
        load them or make a grid of cells (:data:`DISTRICTS_REMEDY`).
    OneMapError
        If ``at`` is not an ISO 8601 moment.
    """
    moment = _moment(at)
    per_layer = [
        layer
        for layer in LAYERS.values()
        if layer.id not in ("districts", "buildings") and access.visible([layer.id])
    ]

    def figures(layer: Layer) -> list[Any]:
        measure = sql.SQL(
            # a line in the district's interior is its own intersection: cut only the others
            "ST_Length(CASE WHEN ST_ContainsProperly(d.geom, f.geom) THEN f.geom "
            "ELSE ST_Intersection(f.geom, d.geom) END::geography)"
            if layer.storage_type in _LINES
            else "1"
        )
        kind = KIND_OF.get(layer.id)
        with cursor(url) as cur:
            cur.execute(
                sql.SQL(_PER_DISTRICT).format(
                    kind=sql.Identifier(kind) if kind else sql.SQL("NULL"),
                    measure=measure,
                    districts=access.relation(LAYERS["districts"]),
                    table=access.relation(layer),
                    d_when=overlay.valid_at(moment, table="d"),
                    f_when=overlay.valid_at(moment, table="f"),
                )
            )
            return cur.fetchall()

    def districts() -> list[Any]:
        with cursor(url) as cur:
            cur.execute(
                sql.SQL(_DISTRICTS).format(
                    districts=access.relation(LAYERS["districts"]),
                    buildings=access.relation(LAYERS["buildings"]),
                    d_when=overlay.valid_at(moment, table="d"),
                    b_when=overlay.valid_at(moment, table="b"),
                )
            )
            return cur.fetchall()

    # the districts and each layer's figures on connections of their own, two at a time
    with ThreadPoolExecutor(max_workers=_WORKERS) as pool:
        listed = pool.submit(contextvars.copy_context().run, districts)
        answers = _in_context(pool, figures, per_layer)
        base = pd.DataFrame(
            listed.result(),
            columns=[
                "id",
                "name",
                "level",
                "area_km2",
                "population",
                "buildings",
                "building_population",
            ],
        )
    if base.empty:
        then = f" as of {moment.isoformat()}" if moment else ""
        raise MissingInputError(
            "districts",
            f"no districts loaded{then}: there is nothing to give figures per district for",
            DISTRICTS_REMEDY,
        )
    columns: dict[str, dict[Any, float]] = {}
    for layer, rows in zip(per_layer, answers, strict=True):
        suffix = "_m" if layer.storage_type in _LINES else "_count"
        for district, key, value in rows:  # ordered by district, then key
            column = f"{layer.id}.{key}{suffix}" if KIND_OF.get(layer.id) else f"{layer.id}{suffix}"
            columns.setdefault(column, {})[district] = float(value)
    if columns:
        added = pd.DataFrame({name: base["id"].map(values) for name, values in columns.items()})
        base = pd.concat([base, added], axis=1)
    numeric = base.columns[3:]
    base[numeric] = base[numeric].astype(float).fillna(0.0)
    return base.sort_values(["level", "name"]).reset_index(drop=True)


_DISTRICTS = """
SELECT d.id, d.name, d.level, ST_Area(d.geom::geography) / 1e6, d.population,
       count(b.id), coalesce(sum(b.population), 0)
FROM {districts} d
LEFT JOIN {buildings} b
  ON {b_when} AND b.geom && d.geom AND ST_Intersects(d.geom, ST_PointOnSurface(b.geom))
WHERE {d_when}
GROUP BY d.id, d.name, d.level, d.geom, d.population
"""
# each pair measured before grouping (OFFSET 0 keeps the planner from sorting the pairs'
# geometries, which spilled to disk), so that the grouping sorts numbers
_PER_DISTRICT = """
SELECT district, key, sum(measure)
FROM (
    SELECT d.id AS district, coalesce(f.{kind}::text, 'unknown') AS key, {measure} AS measure
    FROM {districts} d JOIN {table} f ON f.geom && d.geom AND ST_Intersects(f.geom, d.geom)
    WHERE {d_when} AND {f_when}
    OFFSET 0
) AS pairs
GROUP BY 1, 2
ORDER BY 1, 2
"""


def _moment(at: datetime | str | None) -> datetime | None:
    try:
        return overlay.read_moment(as_of(at))  # a scenario's own moment by default
    except ValueError as exc:
        raise OneMapError(f"not an ISO 8601 moment: {exc}", parameter="datetime") from None


def _columns(layer: Layer) -> list[str]:
    return ["id", "source", "valid_from", "valid_to", *layer.field_names, "props"]


def _in_context(
    pool: ThreadPoolExecutor, task: Callable[[Layer], T], layers: list[Layer]
) -> list[T]:
    """Run ``task`` per layer in the pool, each in a copy of this thread's context.

    The copy carries the caller's grant (:mod:`layers.access`) into the worker threads, so
    their reads run under the caller's clearance, not as the owner.
    """
    futures = [pool.submit(contextvars.copy_context().run, task, layer) for layer in layers]
    return [future.result() for future in futures]


def _layers(layers: Sequence[str] | None) -> list[Layer]:
    if layers is None:
        names = access.visible(list(LAYERS))
        for name in names:
            access.require(name)  # what the caller reads, for the audit
        return [LAYERS[name] for name in names]
    if isinstance(layers, str):
        layers = [layers]
    unknown = [name for name in layers if name not in LAYERS]
    if unknown:
        raise OneMapError(
            f"unknown layer {unknown[0]!r}; known layers: {', '.join(LAYERS)}",
            parameter="layers",
        )
    if not layers:
        raise OneMapError("ask at least one layer", parameter="layers")
    for name in layers:
        access.require(name)
    return [LAYERS[name] for name in dict.fromkeys(layers)]


def _filters(
    filters: Mapping[str, str], asked: list[Layer]
) -> dict[str, tuple[sql.Composable, list[Any]]]:
    names = {layer.id for layer in asked}
    out = {}
    for layer_id, text in filters.items():
        if layer_id not in names:
            raise OneMapError(
                f"a filter for {layer_id!r}, which is not among the layers asked",
                parameter="filter",
            )
        try:
            out[layer_id] = to_sql(text, LAYERS[layer_id])
        except FilterError as exc:
            raise OneMapError(f"{layer_id}: {exc}", parameter="filter") from None
    return out


def _lonlat(point: Sequence[float], parameter: str) -> tuple[float, float]:
    try:
        lon, lat = (float(v) for v in point)
    except (TypeError, ValueError):
        raise OneMapError("give a point as (lon, lat)", parameter=parameter) from None
    if not (np.isfinite(lon) and np.isfinite(lat) and -180 <= lon <= 180 and -90 <= lat <= 90):
        raise OneMapError(f"({lon}, {lat}) is not a lon/lat position", parameter=parameter)
    return lon, lat


def check_geometry(geometry: shapely.Geometry, parameter: str = "geometry") -> None:
    """Refuse a geometry the store cannot be asked about: too big, empty, not lon/lat.

    Parameters
    ----------
    geometry
        A geometry in EPSG:4326.
    parameter
        The request parameter that gave it, for the error.

    Raises
    ------
    OneMapError
        Naming the parameter and what is wrong.
    """
    check_vertices(geometry, parameter)
    parts = shapely.get_parts(geometry)
    if shapely.is_empty(geometry) or shapely.is_empty(parts).any():
        raise OneMapError("the geometry is empty or has an empty part", parameter=parameter)
    rings = shapely.get_rings(parts)
    if len(rings) and shapely.is_empty(rings).any():
        raise OneMapError("the geometry has an empty ring", parameter=parameter)
    _check_bounds(geometry, parameter)


def check_vertices(geometry: shapely.Geometry, parameter: str = "geometry") -> None:
    """Refuse a client's geometry with more vertices than ``TWIN_MAX_VERTICES`` (20,000).

    The check every entry of a client geometry shares (one-map areas and lines, closures,
    incidents, raster zones; CQL2 literals through the same count,
    :func:`layers.cql2.too_many_vertices`).

    Parameters
    ----------
    geometry
        A geometry, any type.
    parameter
        The request parameter that gave it, for the error.

    Raises
    ------
    OneMapError
        Naming the parameter, the vertex count and the limit.
    """
    if reason := too_many_vertices(geometry):
        raise OneMapError(reason, parameter=parameter)


def _check_bounds(geometry: shapely.Geometry, parameter: str = "geometry") -> None:
    xmin, ymin, xmax, ymax = (float(v) for v in shapely.bounds(geometry))
    if not (np.isfinite([xmin, ymin, xmax, ymax]).all() and -180 <= xmin <= xmax <= 180):
        raise OneMapError("coordinates must be lon/lat (EPSG:4326)", parameter=parameter)
    if not -90 <= ymin <= ymax <= 90:
        raise OneMapError("coordinates must be lon/lat (EPSG:4326)", parameter=parameter)


def _check_area(area: shapely.Geometry) -> None:
    if not isinstance(area, shapely.Polygon | shapely.MultiPolygon):
        raise OneMapError("the area must be a Polygon or MultiPolygon", parameter="geometry")
    check_geometry(area)
    if not area.is_valid:
        reason = shapely.is_valid_reason(area)
        raise OneMapError(f"the area is not a valid polygon: {reason}", parameter="geometry")
    km2 = abs(_GEOD.geometry_area_perimeter(area)[0]) / 1e6
    if not np.isfinite(km2) or km2 > MAX_AREA_KM2:
        raise OneMapError(
            f"the area is {km2:,.0f} km², more than {MAX_AREA_KM2:,.0f} km²",
            parameter="geometry",
        )


def _check_line(line: shapely.Geometry, buffer_m: float) -> None:
    if not isinstance(line, shapely.LineString | shapely.MultiLineString):
        raise OneMapError("the line must be a LineString or MultiLineString", parameter="geometry")
    check_geometry(line)
    _check_distance(buffer_m, "buffer_m")


def _check_distance(value: float, parameter: str) -> None:
    if not np.isfinite(value) or value <= 0:
        raise OneMapError(f"{parameter} must be a positive number of metres", parameter=parameter)
    if value > MAX_RADIUS_M:
        raise OneMapError(
            f"{parameter} {value:g} m is more than {MAX_RADIUS_M:g} m", parameter=parameter
        )


_TRANSFORMERS: dict[str, tuple[Transformer, Transformer]] = {}
_WORKERS = 2
_GEOD = Geod(ellps="WGS84")


def _transformers() -> tuple[Transformer, Transformer]:
    """Lon/lat to the city's metric CRS and back."""
    crs = get_settings().metric_crs
    if crs not in _TRANSFORMERS:
        _TRANSFORMERS[crs] = (
            Transformer.from_crs(4326, crs, always_xy=True),
            Transformer.from_crs(crs, 4326, always_xy=True),
        )
    return _TRANSFORMERS[crs]


def _to_metric(geometry: Any, forward: Transformer) -> Any:
    return shapely.transform(geometry, lambda c: np.column_stack(forward.transform(*c.T)))


def _buffer(geometry: shapely.Geometry, distance_m: float) -> shapely.Geometry:
    """Buffer lon/lat geometry by metres, drawn in the city's metric CRS."""
    forward, back = _transformers()
    drawn = shapely.buffer(_to_metric(geometry, forward), distance_m, quad_segs=32)
    return shapely.transform(drawn, lambda c: np.column_stack(back.transform(*c.T)))
