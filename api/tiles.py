"""OGC API - Tiles (OGC 20-057) with Mapbox Vector Tiles: per collection and the one-map.

Clients find the tiles by following links: the landing page's tilesets (``/tiles``, the
one-map as a dataset tileset), a collection's (``/collections/{id}/tiles``), each tileset's
metadata (OGC 17-083r4: its tiling scheme, ``tileMatrixSetLimits``, layers with geometry
dimension and property schema, the tile URL template, TileJSON and style links) and the tile
matrix set itself (``/tileMatrixSets/WebMercatorQuad``, morecantile's definition). The one-map
tileset answers at ``/tiles/WebMercatorQuad`` and, as before, at ``/map/tiles/WebMercatorQuad``.

Tiles are cached per layer set, address and layer versions (held in memory by each worker,
pushed by PostgreSQL LISTEN/NOTIFY: a cached tile reads nothing from the store; the Redis cache,
``TWIN_REDIS_URL``, is shared by every worker of ``twin serve --workers N``); responses carry
an ETag (``If-None-Match`` answers 304) and are gzipped by the app's middleware when the client
accepts it. A tile outside the tile matrix set answers 404 (OGC 20-057 /req/tileset/tc-success
D); a tile inside it where there is no data answers an empty tile.

Live layers (``live_congestion``) have a collection tileset like the stored layers, no style
yet, and ``Cache-Control: no-cache`` (clients revalidate each tile with its ETag, which moves
with the live state); the one-map draws the stored layers unless ``collections`` names a live
one.
"""

from __future__ import annotations

import html
import json
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse

from api.errors import NotFoundError, ProblemError, problem_responses
from api.features import collection_layer
from api.parameters import known_parameters
from layers import access, overlay
from layers.catalog import COLLECTIONS, LAYERS
from layers.features import extent
from layers.queries import as_of
from layers.sources import attribution_text, credits
from layers.tiles import (
    WEB_MERCATOR_QUAD,
    MemoryTileCache,
    RedisTileCache,
    TileCache,
    TileError,
    cached_tile,
    check_in_limits,
    matrix_limits,
    tile_etag,
    tile_fields,
    vector_layers,
    zoom_range,
)

MVT = "application/vnd.mapbox-vector-tile"
TILEJSON = "application/vnd.mapbox.tile+json"
MAPBOX_STYLE = "application/vnd.mapbox.style+json"
MATRIX_SET = "WebMercatorQuad"
TILING_SCHEME = "http://www.opengis.net/def/rel/ogc/1.0/tiling-scheme"
_SPEC = "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf"
#: OGC API - Tiles conformance classes this module implements (gathered by the app).
CONFORMANCE = [
    f"{_SPEC}/core",
    f"{_SPEC}/tileset",
    f"{_SPEC}/tilesets-list",
    f"{_SPEC}/geodata-tilesets",
    f"{_SPEC}/dataset-tilesets",
    f"{_SPEC}/collections-selection",
    f"{_SPEC}/mvt",
    f"{_SPEC}/oas30",
]
CollectionsQuery = Annotated[
    str | None,
    Query(description="Comma-separated collections, drawn in this order; all when absent"),
]
_SCHEMA_TYPES = {
    "text": "string",
    "int": "integer",
    "bigint": "integer",
    "float": "number",
    "bool": "boolean",
}
_DIMENSION = {"Point": 0, "LineString": 1, "Polygon": 2}


AtQuery = Annotated[
    str | None,
    Query(
        description=(
            "RFC 3339 moment: draw the features valid then (UTC if no offset); the current ones "
            "by default (in a scenario, its moment)"
        )
    ),
]


def _moment(value: str | None) -> datetime | None:
    """Parse the ``at`` parameter, refusing what is not a moment (400 naming it)."""
    if value is None:
        return None
    try:
        return as_of(value)
    except ValueError:
        raise ProblemError(
            f"at: {value!r} is not an RFC 3339 moment (e.g. 2026-11-01T08:00:00Z)", parameter="at"
        ) from None


def _state() -> list[tuple[str, str]]:
    """Return the query pairs keeping a tile template in the scenario of the request."""
    scenario = overlay.active()
    return [] if scenario is None else [("scenario", scenario.name)]


def _query(pairs: list[tuple[str, str]]) -> str:
    """Write query pairs as ``?k=v&...`` (commas kept), or nothing."""
    return "?" + "&".join(f"{k}={quote(v, safe=',')}" for k, v in pairs) if pairs else ""


def _matrix_set(value: str) -> None:
    if value != MATRIX_SET:
        raise NotFoundError(
            f"unknown tile matrix set {value!r}; use {MATRIX_SET}", parameter="tileMatrixSetId"
        )


def _collections(value: str | None) -> list[str]:
    if value is None:
        return access.visible(list(LAYERS))  # the one map of what the caller may read
    names = list(dict.fromkeys(v.strip() for v in value.split(",") if v.strip()))  # no repeats
    if not names:
        raise TileError("collections: name at least one collection", parameter="collections")
    for name in names:
        if name not in COLLECTIONS:
            raise TileError(
                f"unknown collection {name!r}; collections: {', '.join(COLLECTIONS)}",
                parameter="collections",
            )
    return names


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def matrix_set_document(base: str) -> dict[str, Any]:
    """Return the WebMercatorQuad definition: morecantile's TMS 2.0 document, and TMS 1.0 names.

    GDAL up to 3.6 reads only the TMS 1.0 names (``supportedCRS``, ``tileMatrix`` with
    ``identifier`` and ``topLeftCorner``); they are added beside the 2.0 members, which the
    TMS 2.0 JSON schema allows, so both generations of clients read the same document.

    Parameters
    ----------
    base
        The API's base URL (for the ``self`` link).

    Returns
    -------
    dict
        The document.
    """
    doc: dict[str, Any] = json.loads(WEB_MERCATOR_QUAD.model_dump_json(exclude_none=True))
    doc["type"] = "TileMatrixSetType"
    doc["identifier"] = doc["id"]
    doc["supportedCRS"] = doc["crs"]
    doc["tileMatrix"] = [
        {
            "identifier": m["id"],
            "scaleDenominator": m["scaleDenominator"],
            "topLeftCorner": m["pointOfOrigin"],
            "tileWidth": m["tileWidth"],
            "tileHeight": m["tileHeight"],
            "matrixWidth": m["matrixWidth"],
            "matrixHeight": m["matrixHeight"],
        }
        for m in doc["tileMatrices"]
    ]
    doc["links"] = [
        {"rel": "self", "type": "application/json", "href": f"{base}/tileMatrixSets/{MATRIX_SET}"}
    ]
    return doc


def _properties_schema(layer_id: str) -> dict[str, Any]:
    layer = COLLECTIONS[layer_id]
    kinds = {f.name: f.kind for f in layer.fields}
    properties: dict[str, Any] = {"id": {"type": "string", "description": "Stable feature id"}}
    for name in tile_fields(layer)[1:]:
        field = next(f for f in layer.fields if f.name == name)
        entry: dict[str, Any] = {"type": _SCHEMA_TYPES.get(kinds[name], "string")}
        if field.choices:
            entry["enum"] = list(field.choices)
        if field.description:
            entry["description"] = field.description
        properties[name] = entry
    return {"type": "object", "properties": properties}


def _tilejson(layer_ids: list[str], template: str, url: str) -> dict[str, Any]:
    boxes = [b for b in (extent(layer_id, url=url) for layer_id in layer_ids) if b]
    bounds = (
        [
            min(b[0] for b in boxes),
            min(b[1] for b in boxes),
            max(b[2] for b in boxes),
            max(b[3] for b in boxes),
        ]
        if boxes
        else [-180, -85.05, 180, 85.05]
    )
    minzoom, maxzoom = zoom_range(layer_ids)
    # exactly the sources of the tileset's current features (a live layer's: its layer's);
    # TileJSON's attribution may hold HTML, so the text is escaped
    stored = list(dict.fromkeys(COLLECTIONS[i].derived_from or i for i in layer_ids))
    credit = html.escape(attribution_text(credits(url, layers=stored)), quote=False)
    return {
        "tilejson": "3.0.0",
        "name": ",".join(layer_ids),
        "scheme": "xyz",
        "tiles": [template],
        "minzoom": minzoom,
        "maxzoom": maxzoom,
        "bounds": bounds,
        "center": [(bounds[0] + bounds[2]) / 2, (bounds[1] + bounds[3]) / 2, maxzoom - 1],
        "attribution": credit,
        "vector_layers": vector_layers(layer_ids),
    }


def _summary(base: str, here: str, title: str, query: str = "") -> dict[str, Any]:
    """Return the part of a tileset's metadata that tilesets lists repeat."""
    return {
        "title": title,
        "dataType": "vector",
        "crs": WEB_MERCATOR_QUAD.crs.srs,
        "tileMatrixSetURI": WEB_MERCATOR_QUAD.uri,
        "links": [
            {"rel": "self", "type": "application/json", "href": f"{here}{query}"},
            {
                "rel": TILING_SCHEME,
                "type": "application/json",
                "href": f"{base}/tileMatrixSets/{MATRIX_SET}",
            },
            {
                "rel": "item",
                "type": MVT,
                "templated": True,
                "href": f"{here}/{{tileMatrix}}/{{tileRow}}/{{tileCol}}{query}",
            },
        ],
    }


def tileset_document(
    base: str, here: str, layer_ids: list[str], *, style: str | None, url: str, query: str = ""
) -> dict[str, Any]:
    """Return OGC 17-083r4 tileset metadata for the tiles of some layers.

    Parameters
    ----------
    base
        The API's base URL.
    here
        The tileset's URL (without query).
    layer_ids
        Its layers, in drawing order.
    style
        Id of its style at ``/styles``; None when it has none (a live layer).
    url
        Database URL.
    query
        Query string (with its ``?``) that every tile and TileJSON link carries.

    Returns
    -------
    dict
        The metadata.
    """
    doc = _summary(base, here, ", ".join(COLLECTIONS[i].title for i in layer_ids), query)
    minzoom, maxzoom = zoom_range(layer_ids)
    doc["minTileMatrix"], doc["maxTileMatrix"] = str(minzoom), str(maxzoom)
    doc["tileMatrixSetLimits"] = matrix_limits(layer_ids, url=url)
    stylesheets = []
    if style is not None:
        stylesheets.append(
            {
                "rel": "stylesheet",
                "type": MAPBOX_STYLE,
                "title": "MapLibre style of these tiles",
                "href": f"{base}/styles/{style}?f=mapbox",
            }
        )
        doc["style"] = {"id": style, "links": stylesheets}
    doc["layers"] = []
    for layer_id in layer_ids:
        low, high = zoom_range([layer_id])
        layer = COLLECTIONS[layer_id]
        box = extent(layer_id, url=url)
        doc["layers"].append(
            {
                "id": layer_id,
                "title": layer.title,
                "description": layer.description,
                "dataType": "vector",
                **(
                    {"geometryDimension": _DIMENSION[kind]}
                    if (kind := layer.storage_type.removeprefix("Multi")) in _DIMENSION
                    else {}
                ),
                "geometryType": layer.storage_type,
                "minTileMatrix": str(low),
                "maxTileMatrix": str(high),
                **(
                    {
                        "boundingBox": {
                            "lowerLeft": box[:2],
                            "upperRight": box[2:],
                            "crs": "http://www.opengis.net/def/crs/OGC/1.3/CRS84",
                        }
                    }
                    if box
                    else {}
                ),
                "propertiesSchema": _properties_schema(layer_id),
                "links": [
                    {
                        "rel": "http://www.opengis.net/def/rel/ogc/1.0/geodata",
                        "type": "application/json",
                        "href": f"{base}/collections/{layer_id}",
                    }
                ],
            }
        )
    doc["links"] += [
        {"rel": "alternate", "type": TILEJSON, "href": f"{here}/tilejson.json{query}"},
        *stylesheets,
    ]
    return {key: value for key, value in doc.items() if value is not None}


def routes(url: str, cache: TileCache) -> APIRouter:
    """Build the tile endpoints.

    Parameters
    ----------
    url
        Database URL.
    cache
        Where tiles are kept.

    Returns
    -------
    fastapi.APIRouter
        The endpoints.
    """
    router = APIRouter(
        tags=["tiles"],
        dependencies=[Depends(known_parameters)],
        responses=problem_responses(400),
    )
    tile_answers: dict[int | str, dict[str, Any]] = {
        200: {
            "description": "A Mapbox Vector Tile: a layer per collection",
            "content": {MVT: {"schema": {"type": "string", "format": "binary"}}},
        },
        304: {"description": "Not modified: the tile of the If-None-Match ETag is current"},
        **problem_responses(404),
    }
    not_found = problem_responses(404)

    def answer(
        request: Request, layer_ids: list[str], z: int, x: int, y: int, at: str | None
    ) -> Response:
        for layer_id in layer_ids:  # before the limits: they would tell a hidden layer's extent
            access.require(layer_id)
        moment = _moment(at)
        try:
            check_in_limits(layer_ids, z, x, y, url=url)
        except TileError as error:  # outside the tileset's limits: no such tile
            raise NotFoundError(str(error), parameter=error.parameter) from None
        etag = tile_etag(layer_ids, z, x, y, at=moment, url=url)
        # live tiles change from one second to the next: clients revalidate them (ETag) each time
        live = any(COLLECTIONS[layer_id].read_only for layer_id in layer_ids)
        # a tile of a signed-in caller, or of a classified layer, is never kept by a shared
        # cache (a proxy would hand it to the next caller, whatever his clearance)
        grant = access.current()
        shared = grant is None or (
            grant.principal.anonymous
            and all(grant.rules.level(layer_id) == 0 for layer_id in layer_ids)
        )
        # a scenario's tiles change under the same URL with every edit: revalidated each time
        fresh = live or overlay.active() is not None
        cache_control = "no-cache" if fresh else f"{'public' if shared else 'private'}, max-age=60"
        headers = {
            "ETag": f'"{etag}"',
            "Cache-Control": cache_control,
            "Vary": "Authorization, X-API-Key",
        }
        asked = {
            tag.strip().removeprefix("W/").strip('"')
            for tag in request.headers.get("if-none-match", "").split(",")
        }
        if etag in asked or "*" in asked:
            return Response(status_code=304, headers=headers)  # not even cut
        tile, _, hit = cached_tile(layer_ids, z, x, y, cache=cache, at=moment, url=url, etag=etag)
        headers["X-Tile-Cache"] = "hit" if hit else "miss"
        return Response(tile, media_type=MVT, headers=headers)

    def one_map_query(names: list[str]) -> str:
        pairs = [] if names == list(LAYERS) else [("collections", ",".join(names))]
        return _query([*pairs, *_state()])

    @router.get("/tileMatrixSets", summary="Tile matrix sets the tiles are cut in")
    def tile_matrix_sets(request: Request) -> dict[str, Any]:
        base = _base(request)
        href = f"{base}/tileMatrixSets/{MATRIX_SET}"
        return {
            "links": [
                {"rel": "self", "type": "application/json", "href": f"{base}/tileMatrixSets"}
            ],
            "tileMatrixSets": [
                {
                    "id": MATRIX_SET,
                    "title": WEB_MERCATOR_QUAD.title,
                    "uri": WEB_MERCATOR_QUAD.uri,
                    "crs": WEB_MERCATOR_QUAD.crs.srs,
                    "links": [
                        {"rel": "self", "type": "application/json", "href": href},
                        {"rel": TILING_SCHEME, "type": "application/json", "href": href},
                    ],
                }
            ],
        }

    @router.get(
        "/tileMatrixSets/{tileMatrixSetId}",
        summary="A tile matrix set's definition",
        responses=not_found,
    )
    def tile_matrix_set(request: Request, tileMatrixSetId: str) -> dict[str, Any]:
        _matrix_set(tileMatrixSetId)
        return matrix_set_document(_base(request))

    @router.get("/tiles", summary="Dataset tilesets: the one-map, a layer per collection")
    def dataset_tilesets(request: Request) -> dict[str, Any]:
        base = _base(request)
        return {
            "links": [{"rel": "self", "type": "application/json", "href": f"{base}/tiles"}],
            "tilesets": [_summary(base, f"{base}/tiles/{MATRIX_SET}", f"One map ({MATRIX_SET})")],
        }

    @router.get(
        "/collections/{collectionId}/tiles", summary="Tilesets of a collection", responses=not_found
    )
    def tilesets(request: Request, collectionId: str) -> dict[str, Any]:
        layer = collection_layer(collectionId)
        base = _base(request)
        here = f"{base}/collections/{layer.id}/tiles"
        return {
            "links": [{"rel": "self", "type": "application/json", "href": here}],
            "tilesets": [_summary(base, f"{here}/{MATRIX_SET}", f"{layer.title} ({MATRIX_SET})")],
        }

    @router.get(
        "/collections/{collectionId}/tiles/{tileMatrixSetId}",
        summary="Tileset metadata of a collection",
        responses=not_found,
    )
    def collection_tileset(
        request: Request, collectionId: str, tileMatrixSetId: str
    ) -> dict[str, Any]:
        layer = collection_layer(collectionId)
        _matrix_set(tileMatrixSetId)
        base = _base(request)
        here = f"{base}/collections/{layer.id}/tiles/{MATRIX_SET}"
        style = None if layer.read_only else layer.id  # live layers have no style (yet)
        return tileset_document(base, here, [layer.id], style=style, url=url)

    def map_tileset(
        request: Request, tileMatrixSetId: str, collections: CollectionsQuery = None
    ) -> dict[str, Any]:
        _matrix_set(tileMatrixSetId)
        names = _collections(collections)
        base = _base(request)
        here = f"{base}{request.url.path}".rstrip("/")
        return tileset_document(base, here, names, style="map", url=url, query=one_map_query(names))

    for prefix in ("/tiles", "/map/tiles"):
        router.add_api_route(
            f"{prefix}/{{tileMatrixSetId}}",
            map_tileset,
            methods=["GET"],
            summary="Tileset metadata of the one-map tiles",
            operation_id=f"one_map_tileset{prefix.replace('/', '_')}",
            responses=not_found,
        )

    @router.get(
        "/collections/{collectionId}/tiles/{tileMatrixSetId}/tilejson.json",
        summary="TileJSON 3.0 of a collection's tiles",
        responses=not_found,
    )
    def collection_tilejson(
        request: Request,
        collectionId: str,
        tileMatrixSetId: str,
    ) -> JSONResponse:
        layer = collection_layer(collectionId)
        _matrix_set(tileMatrixSetId)
        base = _base(request)
        template = f"{base}/collections/{layer.id}/tiles/{MATRIX_SET}/{{z}}/{{y}}/{{x}}"
        return JSONResponse(_tilejson([layer.id], template + _query(_state()), url))

    @router.get(
        "/collections/{collectionId}/tiles/{tileMatrixSetId}/{z}/{y}/{x}",
        summary="One vector tile of a collection",
        response_class=Response,
        responses=tile_answers,
    )
    def collection_tile(
        request: Request,
        collectionId: str,
        tileMatrixSetId: str,
        z: int,
        y: int,
        x: int,
        at: AtQuery = None,
    ) -> Response:
        layer = collection_layer(collectionId)
        _matrix_set(tileMatrixSetId)
        return answer(request, [layer.id], z, x, y, at)

    def map_tilejson(
        request: Request,
        tileMatrixSetId: str,
        collections: CollectionsQuery = None,
    ) -> JSONResponse:
        _matrix_set(tileMatrixSetId)
        names = _collections(collections)
        here = f"{_base(request)}{request.url.path}".removesuffix("/tilejson.json")
        template = f"{here}/{{z}}/{{y}}/{{x}}{one_map_query(names)}"
        return JSONResponse(_tilejson(names, template, url))

    def map_tile(
        request: Request,
        tileMatrixSetId: str,
        z: int,
        y: int,
        x: int,
        collections: CollectionsQuery = None,
        at: AtQuery = None,
    ) -> Response:
        _matrix_set(tileMatrixSetId)
        return answer(request, _collections(collections), z, x, y, at)

    for prefix in ("/tiles", "/map/tiles"):
        name = prefix.replace("/", "_")
        router.add_api_route(
            f"{prefix}/{{tileMatrixSetId}}/tilejson.json",
            map_tilejson,
            methods=["GET"],
            summary="TileJSON 3.0 of the one-map tiles",
            operation_id=f"one_map_tilejson{name}",
            responses=not_found,
        )
        router.add_api_route(
            f"{prefix}/{{tileMatrixSetId}}/{{z}}/{{y}}/{{x}}",
            map_tile,
            methods=["GET"],
            response_class=Response,
            responses=tile_answers,
            summary="One-map vector tile: a layer per collection",
            operation_id=f"one_map_tile{name}",
        )

    return router


def make_cache(redis_url: str | None, memory_mb: int = 256) -> TileCache:
    """Return the tile cache the settings ask for: Redis when a URL is set, else in-process.

    Parameters
    ----------
    redis_url
        Redis URL, or None.
    memory_mb
        Size of the in-process cache; 0 keeps no tile (every request cuts its tile).

    Returns
    -------
    TileCache
        The cache.
    """
    if redis_url:
        return RedisTileCache(redis_url)
    return MemoryTileCache(max_bytes=memory_mb * 1024 * 1024)
