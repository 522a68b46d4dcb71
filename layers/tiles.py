"""Mapbox Vector Tiles (WebMercatorQuad) cut by PostGIS from the stored ``geom_3857``.

Each layer of a tile is named after its collection and gives every feature its version id
(``vid``) as the MVT feature id and its stable ``id`` as a property. Low zooms are generalised
so a tile stays small; from zoom 15 up every feature is present and lines and polygons are not
simplified:

===============  ============================================================================
roads            below z11 only motorway, trunk, primary; below z13 also secondary and
                 tertiary (residential, service, living_street and unclassified from z13)
buildings        from z13
pipelines,       from z12; below z15 power service lines are left out
power_lines
intersections,   below z15: clustered on a grid of 1/64 of the tile, one point per cell
pipe_nodes,      with ``count``
power_nodes
all              below z15 lines and polygons are simplified to a quarter pixel
===============  ============================================================================

Live layers (``live_congestion``: roads with a live speed) have every feature at every zoom;
their counters move with the live state they are derived from, so their tiles are cached
exactly like the stored layers', but their counters are read from the table on each request
(they move every second; a stored layer's are held in memory, below).

Past :data:`ALL_FEATURES_ZOOM` a layer's tiles only get finer coordinates (a 4096 grid cell is
under half a metre at z15), so clients are told to overzoom from there (:func:`zoom_range`);
:func:`matrix_limits` gives the tile ranges that hold a layer's data at each zoom.

Tiles are cached per (layers, z, x, y, layer versions): an import or edit bumps the version
(``layer_versions``, kept by triggers), so a cached tile is never stale. The versions are held
in memory, pushed by PostgreSQL LISTEN/NOTIFY (:mod:`layers.versions`): a tile request reads no
counter from the store, and neither do the tileset limits it is checked against (cached per
layer versions). The cache is in-process (LRU) by default, or Redis when ``TWIN_REDIS_URL`` is
set, so several workers share it.

A tile may be drawn as of a moment (``at``: the versions valid then) and in a what-if scenario
(:mod:`layers.overlay`, in force for the request); both are in its key, with the scenario's
revision, so one state's tile is never served for another.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import morecantile
from psycopg import sql
from sqlalchemy.engine import make_url

from layers import access, overlay
from layers.catalog import COLLECTIONS, LIVE_LAYERS, Layer, get_collection
from layers.database import current_reads, cursor, database_url
from layers.errors import ParameterError
from layers.features import extents
from layers.queries import as_of, layer_versions
from layers.versions import watched_versions

EXTENT = 4096
BUFFER = 64
MAX_ZOOM = 22
ALL_FEATURES_ZOOM = 15
#: Bumped whenever the tiles' content changes for the same data (zoom rules, attributes).
_SCHEMA = "tiles-1"
#: Earth's circumference in Web Mercator metres.
WORLD = 40075016.685578488
_MINOR_ROADS = ("residential", "service", "living_street", "unclassified")
_MAJOR_ROADS = ("motorway", "motorway_link", "trunk", "trunk_link", "primary", "primary_link")
_CLUSTERED = ("intersections", "pipe_nodes", "power_nodes")
_MIN_ZOOM = {"buildings": 13, "pipelines": 12, "power_lines": 12}


#: The tile matrix set every tile is cut in (OGC 17-083r4's definition, from morecantile).
WEB_MERCATOR_QUAD = morecantile.tms.get("WebMercatorQuad")


class TileError(ParameterError):
    """A tile request outside the tile matrix set, or naming an unknown layer."""


def check_tile(z: int, x: int, y: int) -> None:
    """Raise :class:`TileError` unless ``z/x/y`` is a tile of WebMercatorQuad.

    Parameters
    ----------
    z, x, y
        Zoom, column and row.
    """
    if not 0 <= z <= MAX_ZOOM:
        raise TileError(f"zoom {z} is outside 0 to {MAX_ZOOM}", parameter="tileMatrix")
    size = 1 << z
    if not 0 <= x < size:
        raise TileError(f"column {x} is outside 0 to {size - 1} at zoom {z}", parameter="tileCol")
    if not 0 <= y < size:
        raise TileError(f"row {y} is outside 0 to {size - 1} at zoom {z}", parameter="tileRow")


def tile_fields(layer: Layer) -> list[str]:
    """Attributes a layer's tiles carry: its id and the typed attributes that are not JSON.

    Parameters
    ----------
    layer
        The layer.

    Returns
    -------
    list of str
        Property names.
    """
    return ["id", *(f.name for f in layer.fields if f.kind not in ("json", "timestamp"))]


#: TileJSON 3.0 ``vector_layers`` field types of the attribute kinds (others are strings).
TILEJSON_TYPES = {
    "text": "String",
    "int": "Number",
    "bigint": "Number",
    "float": "Number",
    "bool": "Boolean",
}


def vector_layers(layer_ids: Sequence[str]) -> list[dict[str, Any]]:
    """Return the TileJSON 3.0 ``vector_layers`` of tiles holding these layers.

    The same description serves the API's TileJSON and a PMTiles package's metadata.

    Parameters
    ----------
    layer_ids
        Layers in the tiles, in order.

    Returns
    -------
    list of dict
        Per layer: ``id``, ``description`` (its title), ``minzoom``, ``maxzoom``
        (:func:`zoom_range`) and ``fields`` (attribute name -> ``String``, ``Number`` or
        ``Boolean``, as in :func:`tile_fields`).

    Raises
    ------
    TileError
        For an unknown layer.
    """
    described = []
    for layer_id in layer_ids:
        layer = get_collection(layer_id)
        kinds = {f.name: f.kind for f in layer.fields}
        low, high = zoom_range([layer_id])
        described.append(
            {
                "id": layer_id,
                "description": layer.title,
                "minzoom": low,
                "maxzoom": high,
                "fields": {
                    name: TILEJSON_TYPES.get(kinds.get(name, "text"), "String")
                    for name in tile_fields(layer)
                },
            }
        )
    return described


def zoom_range(layer_ids: Sequence[str]) -> tuple[int, int]:
    """Return the zooms between which the tiles of these layers change.

    Below the first, a layer's tiles are empty (buildings, pipelines and power lines are left
    out at low zooms); from the second on every feature is there, unsimplified and unclustered,
    and a deeper tile only has finer coordinates, so a client overzooms the tile of the second.

    Parameters
    ----------
    layer_ids
        Layers in the tiles.

    Returns
    -------
    tuple of int
        ``(minzoom, maxzoom)``.
    """
    for layer_id in layer_ids:
        get_collection(layer_id)  # raises for an unknown layer
    minzoom = min((_MIN_ZOOM.get(layer_id, 0) for layer_id in layer_ids), default=0)
    return minzoom, max(ALL_FEATURES_ZOOM, minzoom)


def matrix_limits(
    layer_ids: Sequence[str], *, url: str | None = None
) -> list[dict[str, int | str]]:
    """Return the tile matrix set limits of these layers: per zoom, the tiles their data covers.

    Parameters
    ----------
    layer_ids
        Layers in the tiles.
    url
        Database URL; the configured one by default.

    Returns
    -------
    list of dict
        One ``{tileMatrix, minTileRow, maxTileRow, minTileCol, maxTileCol}`` per zoom of
        :func:`zoom_range` (OGC 17-083r4 ``tileMatrixSetLimits``); empty when the layers are.
    """
    sources = [get_collection(i).derived_from or i for i in layer_ids]
    key = (
        database_url(url),
        tuple(layer_ids),
        watched_versions([*sources, "access"], url=url),
        access.signature(layer_ids),
    )
    known = _LIMITS.get(key)
    if known is None:
        known = _matrix_limits(layer_ids, url=url)
        with _LIMITS_LOCK:
            if len(_LIMITS) > 1000:
                _LIMITS.clear()
            _LIMITS[key] = known
    return [dict(limit) for limit in known]


#: Tileset limits per (database, layers, layer versions, what the caller sees of them).
_LIMITS: dict[tuple[str, tuple[str, ...], tuple[int, ...], str], list[dict[str, int | str]]] = {}
_LIMITS_LOCK = threading.Lock()


def _matrix_limits(layer_ids: Sequence[str], *, url: str | None) -> list[dict[str, int | str]]:
    boxes = [b for b in extents(layer_ids, url=url) if b]
    if not boxes:
        return []
    west, south = min(b[0] for b in boxes), min(b[1] for b in boxes)
    east, north = max(b[2] for b in boxes), max(b[3] for b in boxes)
    minzoom, maxzoom = zoom_range(layer_ids)
    limits: list[dict[str, int | str]] = []
    for z in range(minzoom, maxzoom + 1):
        top_left = WEB_MERCATOR_QUAD.tile(west, north, z)
        bottom_right = WEB_MERCATOR_QUAD.tile(east, south, z)
        limits.append(
            {
                "tileMatrix": str(z),
                "minTileRow": top_left.y,
                "maxTileRow": bottom_right.y,
                "minTileCol": top_left.x,
                "maxTileCol": bottom_right.x,
            }
        )
    return limits


def check_in_limits(
    layer_ids: Sequence[str], z: int, x: int, y: int, *, url: str | None = None
) -> None:
    """Raise :class:`TileError` unless ``z/x/y`` is a tile the tileset of these layers serves.

    The tiles served are those the tileset metadata declares: the zooms of :func:`zoom_range`
    (deeper tiles would only repeat the last with finer coordinates: clients overzoom) and,
    at each, the rows and columns of :func:`matrix_limits` (OGC 20-057 /req/core/tc-error:
    outside ``tileMatrixSetLimits`` a tile answers 404).

    Parameters
    ----------
    layer_ids
        Layers of the tileset.
    z, x, y
        Zoom, column and row.
    url
        Database URL; the configured one by default.
    """
    check_tile(z, x, y)
    limits = {int(limit["tileMatrix"]): limit for limit in matrix_limits(layer_ids, url=url)}
    if not limits:
        raise TileError(
            f"the tileset of {', '.join(layer_ids)} is empty: it has no tiles",
            parameter="tileMatrix",
        )
    if z not in limits:
        raise TileError(
            f"zoom {z} is outside the tileset's tileMatrixSetLimits ({min(limits)} to "
            f"{max(limits)}; overzoom the tiles of {max(limits)})",
            parameter="tileMatrix",
        )
    limit = limits[z]
    if not int(limit["minTileRow"]) <= y <= int(limit["maxTileRow"]):
        raise TileError(
            f"row {y} is outside the tileset's rows {limit['minTileRow']} to "
            f"{limit['maxTileRow']} at zoom {z} (tileMatrixSetLimits)",
            parameter="tileRow",
        )
    if not int(limit["minTileCol"]) <= x <= int(limit["maxTileCol"]):
        raise TileError(
            f"column {x} is outside the tileset's columns {limit['minTileCol']} to "
            f"{limit['maxTileCol']} at zoom {z} (tileMatrixSetLimits)",
            parameter="tileCol",
        )


def _layer_sql(layer: Layer, z: int, at: datetime | None = None) -> sql.Composable | None:
    """Return the query of one layer's MVT at zoom ``z`` (as of ``at``), or None where hidden."""
    if z < _MIN_ZOOM.get(layer.id, 0):
        return None
    table = access.relation(layer)  # the caller's rows and masked values, as features have
    pixel = WORLD / (1 << z) / EXTENT
    conditions: list[sql.Composable] = [
        overlay.valid_at(at, table="t"),
        sql.SQL("t.geom_3857 && b.buffered"),
    ]
    if layer.id == "roads" and z < 13:
        classes = (
            _MAJOR_ROADS
            if z < 11
            else (*_MAJOR_ROADS, "secondary", "secondary_link", "tertiary", "tertiary_link")
        )
        conditions.append(sql.SQL("t.class = ANY({})").format(sql.Literal(list(classes))))
    if layer.id == "power_lines" and z < ALL_FEATURES_ZOOM:
        conditions.append(sql.SQL("t.kind <> 'service'"))
    where = sql.SQL(" AND ").join(conditions)
    geometry: sql.Composable = sql.SQL("t.geom_3857")
    if z < ALL_FEATURES_ZOOM and layer.storage_type != "Point":
        geometry = sql.SQL("ST_Simplify(t.geom_3857, {})").format(sql.Literal(pixel / 4))
    mvt_geometry = sql.SQL("ST_AsMVTGeom({}, b.envelope, {}, {}, true)").format(
        geometry, sql.Literal(EXTENT), sql.Literal(BUFFER)
    )
    if layer.id in _CLUSTERED and z < ALL_FEATURES_ZOOM:
        cell = sql.Literal(pixel * BUFFER)
        inner = sql.SQL(
            "SELECT min(t.vid) AS vid, count(*) AS count, "
            "ST_AsMVTGeom(ST_Centroid(ST_Collect(t.geom_3857)), b.envelope, {extent}, {buffer}, "
            "true) AS geom FROM {table} t, bounds b WHERE {where} "
            "GROUP BY ST_SnapToGrid(t.geom_3857, {cell}), b.envelope"
        ).format(
            extent=sql.Literal(EXTENT),
            buffer=sql.Literal(BUFFER),
            table=table,
            where=where,
            cell=cell,
        )
    else:
        columns = sql.SQL(", ").join(
            sql.SQL("t.{}").format(sql.Identifier(name)) for name in tile_fields(layer)
        )
        inner = sql.SQL(
            "SELECT t.vid, {columns}, {geom} AS geom FROM {table} t, bounds b WHERE {where}"
        ).format(columns=columns, geom=mvt_geometry, table=table, where=where)
    return sql.SQL(
        "SELECT ST_AsMVT(m, {name}, {extent}, 'geom', 'vid') FROM ({inner}) AS m "
        "WHERE m.geom IS NOT NULL"
    ).format(name=sql.Literal(layer.id), extent=sql.Literal(EXTENT), inner=inner)


def render_tile(
    layer_ids: Sequence[str],
    z: int,
    x: int,
    y: int,
    *,
    at: datetime | None = None,
    url: str | None = None,
) -> bytes:
    """Cut one MVT tile with a layer per requested collection (empty layers are left out).

    Parameters
    ----------
    layer_ids
        Layers to put in the tile, in order.
    z, x, y
        Tile address in WebMercatorQuad.
    at
        The moment drawn (the versions valid then; UTC if naive); None: the current ones, or
        the moment of the scenario in force (:func:`tile_moment`).
    url
        Database URL; the configured one by default.

    Returns
    -------
    bytes
        The tile (protobuf), possibly empty.

    Raises
    ------
    TileError
        For an address outside the matrix, or a moment asked of a live layer (it keeps no
        history).
    """
    check_tile(z, x, y)
    for layer_id in layer_ids:
        access.require(layer_id)
    moment = tile_moment(layer_ids, at)
    # the layers' SQL is the same for every tile of a zoom (for one caller's view, scenario
    # and moment): written once, as bytes; only the tile's bounds are written per tile
    key = (database_url(url), tuple(layer_ids), z, moment, access.signature(layer_ids))
    with cursor(url) as cur:
        body = _TILE_SQL.get(key)
        if body is None:
            composed = _tile_layers(layer_ids, z, moment)
            body = b"" if composed is None else composed.as_bytes(cur)
            if len(_TILE_SQL) >= _TILE_SQL_KEPT:
                _TILE_SQL.clear()
            _TILE_SQL[key] = body
        if not body:
            return b""
        cur.execute(_tile_bounds(z, x, y).as_bytes(cur) + body)
        row = cur.fetchone()
    return bytes(row[0]) if row and row[0] is not None else b""


def _tile_bounds(z: int, x: int, y: int) -> sql.Composed:
    """Write the ``bounds`` a tile's query starts with: its envelope, and with the buffer."""
    return sql.SQL(
        # not materialized: a one-map tile names the bounds once per layer, and a CTE named
        # that often is materialized, which kept each layer's scan from its GiST index where
        # the layer is a scenario's union (read whole: bench/scenarios.py)
        "WITH bounds AS NOT MATERIALIZED (SELECT ST_TileEnvelope({z}, {x}, {y}) AS envelope, "
        "ST_TileEnvelope({z}, {x}, {y}, margin => {margin}) AS buffered) "
    ).format(
        z=sql.Literal(z), x=sql.Literal(x), y=sql.Literal(y), margin=sql.Literal(BUFFER / EXTENT)
    )


def _tile_layers(layer_ids: Sequence[str], z: int, moment: datetime | None) -> sql.Composed | None:
    """Write the rest of a tile's query: every layer's MVT, concatenated (None: none shown)."""
    parts = [_layer_sql(get_collection(layer_id), z, moment) for layer_id in layer_ids]
    queries = [q for q in parts if q is not None]
    if not queries:
        return None
    # MVT layers are independent messages: the layers' tiles concatenate into one tile
    return sql.SQL("SELECT {}").format(
        sql.SQL(" || ").join(sql.SQL("COALESCE(({}), ''::bytea)").format(q) for q in queries)
    )


#: The tile SQL written (:func:`render_tile`), by database, layers, zoom, moment and what the
#: caller sees (:func:`layers.access.signature`: its masks and row rules, the scenario and its
#: revision); cleared when it holds this many.
_TILE_SQL: dict[tuple[str, tuple[str, ...], int, datetime | None, str], bytes] = {}
_TILE_SQL_KEPT = 1024


class TileCache(Protocol):
    """Where cut tiles are kept."""

    def get(self, key: str) -> bytes | None:
        """Return the tile stored under ``key``, or None."""

    def put(self, key: str, tile: bytes) -> None:
        """Store a tile under ``key``."""


class MemoryTileCache:
    """An in-process LRU cache of tiles, bounded in bytes.

    Parameters
    ----------
    max_bytes
        Most bytes of tiles to keep.
    """

    def __init__(self, max_bytes: int = 256 * 1024 * 1024):
        self.max_bytes = max_bytes
        self._tiles: OrderedDict[str, bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        """Return the tile stored under ``key``, or None."""
        with self._lock:
            tile = self._tiles.get(key)
            if tile is not None:
                self._tiles.move_to_end(key)
            return tile

    def put(self, key: str, tile: bytes) -> None:
        """Store a tile, dropping the least recently used ones beyond the size bound."""
        if len(tile) > self.max_bytes:
            return  # also: a cache of 0 bytes keeps nothing
        with self._lock:
            if key in self._tiles:
                return
            self._tiles[key] = tile
            self._size += len(tile)
            while self._size > self.max_bytes and self._tiles:
                _, old = self._tiles.popitem(last=False)
                self._size -= len(old)


class RedisTileCache:
    """Tiles in Redis, shared by every API worker; entries expire after ``ttl_s``.

    Parameters
    ----------
    redis_url
        ``redis://host:port/db``.
    ttl_s
        Lifetime of an entry (stale versions are never asked for again, so they expire).
    """

    def __init__(self, redis_url: str, ttl_s: int = 24 * 3600):
        import redis

        self.client: Any = redis.Redis.from_url(redis_url)
        self.ttl_s = ttl_s

    def get(self, key: str) -> bytes | None:
        """Return the tile stored under ``key``, or None."""
        value = self.client.get(f"twin:tile:{key}")
        return None if value is None else bytes(value)

    def put(self, key: str, tile: bytes) -> None:
        """Store a tile with its time to live."""
        self.client.set(f"twin:tile:{key}", tile, ex=self.ttl_s)


def tile_moment(layer_ids: Sequence[str], at: datetime | None) -> datetime | None:
    """Return the moment a tile draws: ``at``, else the scenario's in force, else None (now).

    Parameters
    ----------
    layer_ids
        Layers in the tile.
    at
        The moment asked for (UTC if naive).

    Returns
    -------
    datetime or None
        The moment, timezone-aware.

    Raises
    ------
    TileError
        If a moment is asked of a live layer (``parameter`` ``at``).
    """
    scenario = overlay.active()
    moment = as_of(at) if at is not None else (scenario.moment if scenario else None)
    live = [layer_id for layer_id in layer_ids if layer_id in LIVE_LAYERS]
    if moment is not None and live:
        raise TileError(
            f"at: {live[0]} is live state and keeps no history; ask it without a moment",
            parameter="at",
        )
    return moment


def tile_etag(
    layer_ids: Sequence[str],
    z: int,
    x: int,
    y: int,
    *,
    at: datetime | None = None,
    url: str | None = None,
) -> str:
    """Return a tile's ETag: a digest of the database, layers, address, versions and moment.

    What the caller sees (grant, and the scenario in force with its revision,
    :func:`layers.access.signature`) and the moment drawn are part of it: one state's tile is
    never served for another.

    Parameters
    ----------
    layer_ids
        Layers in the tile.
    z, x, y
        Tile address.
    at
        The moment drawn (see :func:`render_tile`).
    url
        Database URL; the configured one by default.

    Returns
    -------
    str
        The ETag (also the cache key).

    Raises
    ------
    TileError
        For an address outside the matrix or an unknown layer.
    """
    unknown = [layer_id for layer_id in layer_ids if layer_id not in COLLECTIONS]
    if unknown:
        raise TileError(
            f"unknown collection {unknown[0]!r}; collections: {', '.join(COLLECTIONS)}",
            parameter="collections",
        )
    check_tile(z, x, y)
    for layer_id in layer_ids:
        access.require(layer_id)
    # the access rules' counter and what the caller sees of the layers: a tile cut for one
    # clearance is never served to another that sees less (or more)
    counted = [*layer_ids, "access"]
    # live layers change from one second to the next and their tiles are revalidated on every
    # request: their counters are read from the table (one small query), never from memory, so
    # a speed stored a moment ago by any writer moves the ETag on the next request
    live = any(layer_id in LIVE_LAYERS for layer_id in layer_ids)
    versions = layer_versions(counted, url=url) if live else watched_versions(counted, url=url)
    seen = access.signature(layer_ids)
    moment = tile_moment(layer_ids, at)
    when = "" if moment is None else f"|at={moment.astimezone(UTC).isoformat()}"
    where = make_url(database_url(url))
    store = f"{where.host}:{where.port}/{where.database}"  # caches may be shared (Redis)
    key = (
        f"{store}|{_SCHEMA}|{','.join(layer_ids)}/{z}/{x}/{y}/{'.'.join(map(str, versions))}|{seen}"
        f"{when}"
    )
    return hashlib.sha1(key.encode()).hexdigest()[:24]


def cached_tile(
    layer_ids: Sequence[str],
    z: int,
    x: int,
    y: int,
    *,
    cache: TileCache,
    at: datetime | None = None,
    url: str | None = None,
    etag: str | None = None,
) -> tuple[bytes, str, bool]:
    """Return a tile from the cache, cutting it on a miss.

    Parameters
    ----------
    layer_ids
        Layers in the tile.
    z, x, y
        Tile address.
    cache
        Where tiles are kept.
    at
        The moment drawn (see :func:`render_tile`).
    url
        Database URL; the configured one by default.
    etag
        The tile's ETag if already known (:func:`tile_etag`).

    Returns
    -------
    tuple
        The tile, its ETag and whether it came from the cache.

    Raises
    ------
    TileError
        For an address outside the matrix or an unknown layer.
    """
    etag = etag or tile_etag(layer_ids, z, x, y, at=at, url=url)
    tile = cache.get(etag)
    if tile is not None:
        return tile, etag, True
    # cut from a store at least as new as the versions in the key (a read replica that has not
    # replayed the change yet would have the old content cached under the new key)
    with current_reads(url):
        tile = render_tile(layer_ids, z, x, y, at=at, url=url)
    cache.put(etag, tile)
    return tile, etag, False
