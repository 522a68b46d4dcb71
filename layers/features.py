"""Feature queries behind OGC API - Features: bbox, datetime, CQL2 filter, paging, CRS.

GeoJSON is built by PostGIS (``ST_AsGeoJSON``), in the requested CRS and its axis order
(EPSG:4326 and EPSG:4490 are latitude first; CRS84 is longitude first).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pyarrow as pa
from psycopg import sql
from pyproj import CRS

from layers import access, overlay
from layers.catalog import Layer, get_collection
from layers.cql2 import FilterError, bbox_boxes, to_sql
from layers.database import cursor, database_url
from layers.errors import ParameterError
from layers.queries import layer_versions
from layers.settings import get_settings

CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
# a full-date, or a date-time with its offset (RFC 3339 requires it)
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2}))?$")
MAX_LIMIT = 10_000
MAX_OFFSET = 10_000_000


# what PostgreSQL may still refuse in a checked filter (a value out of range, a CRS transform
# that fails): the client's request, answered 400 in our words, never PostgreSQL's
_FILTER_ERRORS = (psycopg.DataError, psycopg.ProgrammingError, psycopg.errors.InternalError_)
#: How many features a page holds when the request does not say.
DEFAULT_LIMIT = 100


class FeatureQueryError(ParameterError):
    """A feature request parameter that cannot be honoured."""


@dataclass(frozen=True)
class FeaturePage:
    """One page of features: a GeoJSON array as text, and the counts OGC API reports."""

    features_json: str
    returned: int
    matched: int


@dataclass(frozen=True)
class OutputCrs:
    """A CRS features can be served in."""

    uri: str
    srid: int
    lat_first: bool
    decimals: int


def supported_crs() -> dict[str, OutputCrs]:
    """Return the CRSs features are served in, by URI: CRS84, EPSG:4326, 3857, 4490, metric.

    Returns
    -------
    dict of str to OutputCrs
        URI to CRS.
    """
    metric = CRS.from_user_input(get_settings().metric_crs).to_epsg() or 32632
    out = {CRS84: OutputCrs(CRS84, 4326, False, 7)}
    for code, lat_first, decimals in (
        (4326, True, 7),
        (3857, False, 2),
        (4490, True, 7),
        (metric, False, 2),
    ):
        uri = f"http://www.opengis.net/def/crs/EPSG/0/{code}"
        out[uri] = OutputCrs(uri, code, lat_first, decimals)
    return out


def resolve_crs(value: str | None, parameter: str) -> OutputCrs:
    """Return the CRS a ``crs`` or ``bbox-crs`` parameter names (CRS84 when absent).

    Parameters
    ----------
    value
        A CRS URI, or ``EPSG:nnnn``.
    parameter
        Parameter name, for errors.

    Returns
    -------
    OutputCrs
        The CRS.

    Raises
    ------
    FeatureQueryError
        If the CRS is not supported.
    """
    crs = supported_crs()
    if value is None:
        return crs[CRS84]
    if value.upper().startswith("EPSG:"):
        value = f"http://www.opengis.net/def/crs/EPSG/0/{value.split(':', 1)[1]}"
    if value not in crs:
        raise FeatureQueryError(
            f"unsupported CRS {value}; supported: {', '.join(crs)}", parameter=parameter
        )
    return crs[value]


def parse_datetime(value: str | None) -> tuple[datetime | None, datetime | None, bool]:
    """Parse an OGC ``datetime``: an instant, or an interval ``a/b`` (``..`` or empty: open).

    An instant that is a date alone (``2026-01-15``) is that whole day, as an interval.

    Parameters
    ----------
    value
        The parameter.

    Returns
    -------
    tuple
        ``(start, end, is_instant)``; both None when absent, one None for an open end.

    Raises
    ------
    FeatureQueryError
        If it is not RFC 3339, an interval is open at both ends, or ends before it starts.
    """
    if value is None:
        return None, None, False

    def one(text: str) -> datetime | None:
        if text in ("", ".."):
            return None
        text = text.upper()
        if not _RFC3339.match(text):
            raise FeatureQueryError(f"not an RFC 3339 date-time: {text!r}", parameter="datetime")
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise FeatureQueryError(
                f"not an RFC 3339 date-time: {text!r}", parameter="datetime"
            ) from None
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)

    if "/" in value:
        first, second = value.split("/", 1)
        start, end = one(first), one(second)
        if start is None and end is None:
            raise FeatureQueryError(
                "datetime: an interval needs at least one end (../.. is not one)",
                parameter="datetime",
            )
        if start and end and end < start:
            raise FeatureQueryError("datetime interval ends before it starts", parameter="datetime")
        if end is not None and "T" not in second.upper():  # a date as the end: the whole day
            end += timedelta(days=1) - timedelta(microseconds=1)
        return start, end, False
    moment = one(value)
    if moment is not None and "T" not in value.upper():
        return moment, moment + timedelta(days=1) - timedelta(microseconds=1), False
    return moment, moment, True


def parse_bbox(value: str | None) -> tuple[float, ...] | None:
    """Parse an OGC ``bbox``: four numbers (2D) or six (3D: ``minx,miny,minz,maxx,maxy,maxz``).

    Parameters
    ----------
    value
        The parameter, comma-separated.

    Returns
    -------
    tuple of float or None
        The numbers as given.

    Raises
    ------
    FeatureQueryError
        If it is not four or six finite numbers.
    """
    if value is None:
        return None
    try:
        numbers = tuple(float(v) for v in value.split(","))
    except ValueError:
        raise FeatureQueryError(
            "bbox: expected four or six comma-separated numbers", parameter="bbox"
        ) from None
    if len(numbers) not in (4, 6):
        raise FeatureQueryError(
            f"bbox: expected four numbers (2D) or six (3D), got {len(numbers)}", parameter="bbox"
        )
    if not all(math.isfinite(v) for v in numbers):
        raise FeatureQueryError("bbox: coordinates must be finite numbers", parameter="bbox")
    return numbers


def _bbox_clause(bbox: Sequence[float], crs: OutputCrs) -> tuple[sql.Composable, list[Any]]:
    """Write a bbox condition; a geographic box with minx > maxx crosses the antimeridian.

    CQL2's ``BBOX`` follows the same rule (:func:`layers.cql2.bbox_boxes`).
    """
    try:
        boxes = bbox_boxes(list(bbox), crs.srid, crs.lat_first)
    except FilterError as exc:
        raise FeatureQueryError(f"bbox: {exc}", parameter="bbox") from None
    # ST_Intersects, not &&: the index boxes are float4, a little larger than the bbox
    box = sql.SQL("ST_Intersects(geom, ST_Transform(ST_MakeEnvelope(%s, %s, %s, %s, %s), 4326))")
    params: list[Any] = []
    for edges in boxes:
        params += [*edges, crs.srid]
    condition = sql.SQL(" OR ").join([box] * len(boxes))
    return sql.SQL("({})").format(condition), params


def _refused(filter_text: str | None, bbox: Sequence[float] | None) -> FeatureQueryError | None:
    """Say, in the API's words, that the database could not evaluate a checked request."""
    if filter_text is not None:
        return FeatureQueryError(
            "filter: cannot be evaluated over these features (a number out of range, or a "
            "geometry that cannot be moved into the data's CRS)",
            parameter="filter",
        )
    if bbox is not None:
        return FeatureQueryError(
            "bbox: cannot be moved into the data's CRS; check its CRS (bbox-crs) and axis order",
            parameter="bbox",
        )
    return None


def _where(
    layer: Layer,
    *,
    bbox: Sequence[float] | None,
    bbox_crs: OutputCrs,
    datetime_value: str | None,
    filter_text: str | None,
    filter_crs: OutputCrs | None = None,
    filter_lang: str = "cql2-text",
) -> tuple[sql.Composable, list[Any]]:
    clauses: list[sql.Composable] = []
    params: list[Any] = []
    start, end, instant = parse_datetime(datetime_value)
    scenario_moment = overlay.read_moment(None)  # a scenario built on a past moment
    if datetime_value is None:  # the current versions, or a scenario's past moment's
        clauses.append(overlay.valid_at(scenario_moment))
    elif instant:
        clauses.append(overlay.valid_at(start))
    else:
        if end is not None:
            clauses.append(sql.SQL("valid_from <= %s"))
            params.append(end)
        if start is not None:
            clauses.append(sql.SQL("(valid_to IS NULL OR valid_to > %s)"))
            params.append(start)
    if bbox is not None:
        condition, values = _bbox_clause(bbox, bbox_crs)
        clauses.append(condition)
        params += values
    if filter_text is not None:
        try:
            crs = filter_crs or supported_crs()[CRS84]
            condition, values = to_sql(
                filter_text, layer, lang=filter_lang, srid=crs.srid, lat_first=crs.lat_first
            )
        except FilterError as exc:
            raise FeatureQueryError(str(exc), parameter="filter") from None
        clauses.append(condition)
        params += values
    return sql.SQL(" AND ").join(clauses) if clauses else sql.SQL("TRUE"), params


def _page_query(
    layer_id: str,
    bbox: Sequence[float] | None,
    bbox_crs: str | None,
    datetime_value: str | None,
    filter_text: str | None,
    limit: int,
    offset: int,
    crs: str | None,
    filter_crs: str | None = None,
    filter_lang: str = "cql2-text",
) -> tuple[Layer, OutputCrs, sql.Composable, list[Any]]:
    """Check a page request; return the layer, output CRS, and the WHERE clause with params."""
    layer = get_collection(layer_id)
    access.require(layer.id)
    if not 1 <= limit <= MAX_LIMIT:
        raise FeatureQueryError(f"limit must be 1 to {MAX_LIMIT}", parameter="limit")
    if not 0 <= offset <= MAX_OFFSET:
        raise FeatureQueryError(f"offset must be 0 to {MAX_OFFSET}", parameter="offset")
    where, params = _where(
        layer,
        bbox=bbox,
        bbox_crs=resolve_crs(bbox_crs, "bbox-crs"),
        datetime_value=datetime_value,
        filter_text=filter_text,
        filter_crs=resolve_crs(filter_crs, "filter-crs"),
        filter_lang=filter_lang,
    )
    return layer, resolve_crs(crs, "crs"), where, params


def _feature_sql(layer: Layer, crs: OutputCrs) -> sql.Composable:
    geometry = sql.SQL("ST_Transform(geom, {srid})").format(srid=sql.Literal(crs.srid))
    if crs.lat_first:
        geometry = sql.SQL("ST_FlipCoordinates({})").format(geometry)
    typed = sql.SQL(", ").join(
        sql.SQL("{}, {}").format(sql.Literal(name), sql.Identifier(name))
        for name in ("source", "valid_from", "valid_to", *layer.field_names)
    )
    return sql.SQL(
        "json_build_object('type', 'Feature', 'id', id, "
        "'geometry', ST_AsGeoJSON({geometry}, {decimals})::json, "
        "'properties', props || jsonb_build_object({typed}))"
    ).format(geometry=geometry, decimals=sql.Literal(crs.decimals), typed=typed)


def query_features(
    layer_id: str,
    *,
    bbox: Sequence[float] | None = None,
    bbox_crs: str | None = None,
    datetime_value: str | None = None,
    filter_text: str | None = None,
    limit: int = DEFAULT_LIMIT,
    offset: int = 0,
    crs: str | None = None,
    filter_crs: str | None = None,
    filter_lang: str = "cql2-text",
    url: str | None = None,
) -> FeaturePage:
    """Return one page of a layer's features as GeoJSON text, and how many match in all.

    Parameters
    ----------
    layer_id
        Layer (collection) id.
    bbox
        Four numbers in ``bbox_crs``, or six (3D; the heights are not used); a geographic box
        whose ``minx`` is above its ``maxx`` crosses the antimeridian.
    bbox_crs
        CRS of the bbox; CRS84 by default.
    datetime_value
        An instant (the versions valid then) or an interval (versions valid during it);
        current versions when None.
    filter_text
        CQL2 filter.
    limit, offset
        Paging, in the order of feature id then version.
    crs
        Output CRS; CRS84 by default.
    filter_crs
        CRS of the filter's geometries; CRS84 by default.
    filter_lang
        ``cql2-text`` (default) or ``cql2-json``.
    url
        Database URL; the configured one by default.

    Returns
    -------
    FeaturePage
        The features (a JSON array, as text), ``numberReturned`` and ``numberMatched``.

    Raises
    ------
    FeatureQueryError
        For a parameter that cannot be honoured.
    """
    layer, out_crs, where, params = _page_query(
        layer_id,
        bbox,
        bbox_crs,
        datetime_value,
        filter_text,
        limit,
        offset,
        crs,
        filter_crs,
        filter_lang,
    )
    table = access.relation(layer)  # the caller's rows and masked values
    # PostgreSQL writes the page's JSON text itself; Python never parses it on the way out
    page = sql.SQL(
        "SELECT coalesce(json_agg(p.f ORDER BY p.id, p.vid), '[]'::json)::text, count(*), "
        "coalesce(array_agg(p.id ORDER BY p.id, p.vid), '{{}}') FROM "
        "(SELECT id, vid, {feature} AS f FROM {table} AS t WHERE {where} "
        "ORDER BY id, vid LIMIT %s OFFSET %s) AS p"
    ).format(feature=_feature_sql(layer, out_crs), table=table, where=where)
    count = sql.SQL("SELECT count(*) FROM {table} AS t WHERE {where}").format(
        table=table, where=where
    )
    with cursor(url) as cur:
        try:
            cur.execute(page, [*params, limit, offset])
            text, returned, ids = cur.fetchone() or ("[]", 0, [])
            if offset == 0 and returned < limit:
                matched = int(returned)  # the whole answer is on this page
            else:
                cur.execute(count, params)
                matched = int((cur.fetchone() or (0,))[0])
        except _FILTER_ERRORS:
            refusal = _refused(filter_text, bbox)
            if refusal is None:
                raise
            raise refusal from None
    access.note(layer.id, count=int(returned), ids=ids)  # for the audit of the request
    return FeaturePage(text, int(returned), matched)


def query_arrow(
    layer_id: str,
    *,
    bbox: Sequence[float] | None = None,
    bbox_crs: str | None = None,
    datetime_value: str | None = None,
    filter_text: str | None = None,
    limit: int = DEFAULT_LIMIT,
    offset: int = 0,
    crs: str | None = None,
    filter_crs: str | None = None,
    filter_lang: str = "cql2-text",
    url: str | None = None,
) -> pa.Table:
    """Return one page of features as an Arrow table with a GeoArrow (WKB) geometry column.

    Same parameters as :func:`query_features`; the geometry column is named ``geometry`` and
    carries the ``geoarrow.wkb`` extension with its CRS as PROJJSON (coordinates in the CRS's
    x/y order), ready for deck.gl, lonboard and ``geopandas.GeoDataFrame.from_arrow``.

    Returns
    -------
    pyarrow.Table
        ``id``, ``source``, ``valid_from``, ``valid_to``, the typed attributes, ``props``
        (JSON text) and ``geometry``.
    """
    layer, out_crs, where, params = _page_query(
        layer_id,
        bbox,
        bbox_crs,
        datetime_value,
        filter_text,
        limit,
        offset,
        crs,
        filter_crs,
        filter_lang,
    )
    names = ["id", "source", "valid_from", "valid_to", *layer.field_names]
    columns = sql.SQL(", ").join(map(sql.Identifier, names))
    query = sql.SQL(
        "SELECT {columns}, props::text, ST_AsBinary(ST_Transform(geom, %s)) FROM {table} AS t "
        "WHERE {where} ORDER BY id, vid LIMIT %s OFFSET %s"
    ).format(columns=columns, table=access.relation(layer), where=where)
    with cursor(url) as cur:
        try:
            cur.execute(query, [out_crs.srid, *params, limit, offset])
        except _FILTER_ERRORS:
            refusal = _refused(filter_text, bbox)
            if refusal is None:
                raise
            raise refusal from None
        rows = cur.fetchall()
    access.note(layer.id, count=len(rows), ids=[str(row[0]) for row in rows])
    values = list(zip(*rows, strict=True)) if rows else [()] * (len(names) + 2)
    arrays: dict[str, Any] = {}
    for name, column in zip([*names, "props"], values, strict=False):
        kind = (
            "timestamp"
            if name in ("valid_from", "valid_to")
            else next((f.kind for f in layer.fields if f.name == name), "text")
        )
        if kind == "json":
            column = tuple(None if v is None else json.dumps(v) for v in column)
        arrays[name] = pa.array(column, type=_ARROW_TYPES.get(kind, pa.string()))
    projjson = CRS.from_epsg(out_crs.srid).to_json()
    geometry = pa.field(
        "geometry",
        pa.binary(),
        metadata={
            b"ARROW:extension:name": b"geoarrow.wkb",
            b"ARROW:extension:metadata": json.dumps({"crs": json.loads(projjson)}).encode(),
        },
    )
    fields = [pa.field(name, array.type) for name, array in arrays.items()] + [geometry]
    data = [*arrays.values(), pa.array([bytes(g) for g in values[-1]], type=pa.binary())]
    return pa.Table.from_arrays(data, schema=pa.schema(fields))


_ARROW_TYPES = {
    "text": pa.string(),
    "int": pa.int32(),
    "bigint": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "json": pa.string(),
    "timestamp": pa.timestamp("us", tz="UTC"),
}


def get_feature(
    layer_id: str, feature_id: str, *, crs: str | None = None, url: str | None = None
) -> dict[str, Any] | None:
    """Return the current version of one feature as a GeoJSON dict, or None.

    In a scenario built on a past moment (:func:`layers.overlay.read_moment`), the version of
    that moment.

    Parameters
    ----------
    layer_id
        Layer id.
    feature_id
        Feature id.
    crs
        Output CRS; CRS84 by default.
    url
        Database URL; the configured one by default.

    Returns
    -------
    dict or None
        The feature.
    """
    layer = get_collection(layer_id)
    access.require(layer.id)
    out_crs = resolve_crs(crs, "crs")
    query = sql.SQL("SELECT {feature} FROM {table} AS t WHERE id = %s AND {when}").format(
        feature=_feature_sql(layer, out_crs),
        table=access.relation(layer),
        when=overlay.valid_at(overlay.read_moment(None)),
    )
    with cursor(url) as cur:
        cur.execute(query, (feature_id,))
        row = cur.fetchone()
    if row is None:
        return None
    access.note(layer.id, count=1, ids=[feature_id])
    return dict(row[0])


_EXTENTS: dict[tuple[str, str, int, str], list[float] | None] = {}


def extent(layer_id: str, *, url: str | None = None) -> list[float] | None:
    """Return the bbox (lon/lat) of a layer's current features, or None when it is empty.

    Parameters
    ----------
    layer_id
        Layer id.
    url
        Database URL; the configured one by default.

    Returns
    -------
    list of float or None
        ``[minx, miny, maxx, maxy]``.
    """
    return extents([layer_id], url=url)[0]


def extents(layer_ids: Sequence[str], *, url: str | None = None) -> list[list[float] | None]:
    """Return the extent of each layer's current features, reading their versions in one query.

    Parameters
    ----------
    layer_ids
        Layer ids.
    url
        Database URL; the configured one by default.

    Returns
    -------
    list of (list of float or None)
        Per layer, ``[minx, miny, maxx, maxy]`` in EPSG:4326 degrees, or None when it is empty.
    """
    # cached per layer version: the counters the tile cache uses keep it fresh; one query for
    # the versions of every layer (a one-map tile asks for thirteen on each request). A live
    # layer declares the extent of the layer it is derived from: where its features can be.
    where = database_url(url)
    out: list[list[float] | None] = []
    sources = [get_collection(layer_id).derived_from or layer_id for layer_id in layer_ids]
    for layer_id, version in zip(sources, layer_versions(sources, url=url), strict=True):
        key = (where, layer_id, version, access.signature([layer_id]))
        if key not in _EXTENTS:
            if len(_EXTENTS) > 1000:
                _EXTENTS.clear()
            _EXTENTS[key] = _extent(layer_id, url=url)
        out.append(_EXTENTS[key])
    return out


def _extent(layer_id: str, *, url: str | None = None) -> list[float] | None:
    query = sql.SQL(
        "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM "
        "(SELECT ST_Extent(geom) AS e FROM {table} AS t WHERE valid_to IS NULL) AS x"
    ).format(table=access.relation(get_collection(layer_id)))
    with cursor(url) as cur:
        cur.execute(query)
        row = cur.fetchone()
    if row is None or row[0] is None:
        return None
    return [float(v) for v in row]


_TEMPORAL: dict[tuple[str, str, int, str], list[str | None] | None] = {}


def temporal_extent(layer_id: str, *, url: str | None = None) -> list[str | None] | None:
    """Return the time a layer's versions span, as ``datetime`` answers it, or None if empty.

    Parameters
    ----------
    layer_id
        Layer id.
    url
        Database URL; the configured one by default.

    Returns
    -------
    list or None
        ``[start, end]`` as RFC 3339 text (UTC): the first ``valid_from``, and the last
        ``valid_to`` or None (open) while any version is current.
    """
    version = layer_versions([layer_id], url=url)[0]
    key = (database_url(url), layer_id, version, access.signature([layer_id]))
    if key not in _TEMPORAL:
        if len(_TEMPORAL) > 1000:
            _TEMPORAL.clear()
        query = sql.SQL(
            "SELECT min(valid_from), CASE WHEN bool_or(valid_to IS NULL) THEN NULL "
            "ELSE max(valid_to) END, count(*) FROM {table} AS t"
        ).format(table=access.relation(get_collection(layer_id)))
        with cursor(url) as cur:
            cur.execute(query)
            start, end, count = cur.fetchone() or (None, None, 0)

        def text(moment: datetime | None) -> str | None:
            if moment is None:
                return None
            return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")

        _TEMPORAL[key] = [text(start), text(end)] if count else None
    return _TEMPORAL[key]
