"""OGC API - Tiles with Mapbox Vector Tiles: per collection and a combined one-map tile.

Tiles are cached per layer set, address and layer versions; responses carry an ETag
(``If-None-Match`` answers 304) and are gzipped by the app's middleware when the client
accepts it.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from api.errors import NotFoundError
from api.features import collection_layer
from layers.catalog import LAYERS
from layers.features import extent
from layers.tiles import (
    MAX_ZOOM,
    MemoryTileCache,
    RedisTileCache,
    TileCache,
    TileError,
    cached_tile,
    tile_etag,
    tile_fields,
)

MVT = "application/vnd.mapbox-vector-tile"
MATRIX_SET = "WebMercatorQuad"
CollectionsQuery = Annotated[str | None, Query(description="Comma-separated; all when absent")]
_TYPES = {
    "text": "String",
    "int": "Number",
    "bigint": "Number",
    "float": "Number",
    "bool": "Boolean",
}


def _matrix_set(value: str) -> None:
    if value != MATRIX_SET:
        raise NotFoundError(
            f"unknown tile matrix set {value!r}; use {MATRIX_SET}", parameter="tileMatrixSetId"
        )


def _collections(value: str | None) -> list[str]:
    if value is None:
        return list(LAYERS)
    names = list(dict.fromkeys(v.strip() for v in value.split(",") if v.strip()))  # no repeats
    if not names:
        raise TileError("collections: name at least one collection", parameter="collections")
    for name in names:
        if name not in LAYERS:
            raise TileError(
                f"unknown collection {name!r}; collections: {', '.join(LAYERS)}",
                parameter="collections",
            )
    return names


def _tilejson(request: Request, layer_ids: list[str], template: str, url: str) -> dict[str, Any]:
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
    return {
        "tilejson": "3.0.0",
        "name": ",".join(layer_ids),
        "scheme": "xyz",
        "tiles": [template],
        "minzoom": 0,
        "maxzoom": MAX_ZOOM,
        "bounds": bounds,
        "center": [(bounds[0] + bounds[2]) / 2, (bounds[1] + bounds[3]) / 2, 14],
        "attribution": "© OpenStreetMap contributors",
        "vector_layers": [
            {
                "id": layer_id,
                "description": LAYERS[layer_id].title,
                "fields": {
                    name: _TYPES.get(
                        next((f.kind for f in LAYERS[layer_id].fields if f.name == name), "text"),
                        "String",
                    )
                    for name in tile_fields(LAYERS[layer_id])
                },
            }
            for layer_id in layer_ids
        ],
    }


def _tileset(here: str, layer_ids: list[str]) -> dict[str, Any]:
    """OGC API - Tiles tileset metadata: the matrix set, the layers and the tile template."""
    return {
        "title": ", ".join(layer_ids),
        "dataType": "vector",
        "crs": "http://www.opengis.net/def/crs/EPSG/0/3857",
        "tileMatrixSetURI": "http://www.opengis.net/def/tilematrixset/OGC/1.0/WebMercatorQuad",
        "layers": [
            {
                "id": layer_id,
                "dataType": "vector",
                "geometryType": LAYERS[layer_id].storage_type.lower(),
            }
            for layer_id in layer_ids
        ],
        "links": [
            {"rel": "self", "type": "application/json", "href": here},
            {
                "rel": "item",
                "type": MVT,
                "templated": True,
                "href": f"{here}/{{tileMatrix}}/{{tileRow}}/{{tileCol}}",
            },
            {
                "rel": "alternate",
                "type": "application/vnd.mapbox.tile+json",
                "href": f"{here}/tilejson.json",
            },
        ],
    }


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
    router = APIRouter(tags=["tiles"])

    def answer(request: Request, layer_ids: list[str], z: int, x: int, y: int) -> Response:
        etag = tile_etag(layer_ids, z, x, y, url=url)
        headers = {"ETag": f'"{etag}"', "Cache-Control": "public, max-age=60"}
        asked = {
            tag.strip().removeprefix("W/").strip('"')
            for tag in request.headers.get("if-none-match", "").split(",")
        }
        if etag in asked or "*" in asked:
            return Response(status_code=304, headers=headers)  # not even cut
        tile, _, hit = cached_tile(layer_ids, z, x, y, cache=cache, url=url, etag=etag)
        headers["X-Tile-Cache"] = "hit" if hit else "miss"
        return Response(tile, media_type=MVT, headers=headers)

    @router.get("/collections/{collectionId}/tiles", summary="Tilesets of a collection")
    def tilesets(request: Request, collectionId: str) -> dict[str, Any]:
        layer = collection_layer(collectionId)
        base = str(request.base_url).rstrip("/")
        return {
            "tilesets": [
                {
                    "title": f"{layer.title} ({MATRIX_SET})",
                    "dataType": "vector",
                    "tileMatrixSetURI": "http://www.opengis.net/def/tilematrixset/OGC/1.0/WebMercatorQuad",
                    "links": [
                        {
                            "rel": "self",
                            "href": f"{base}/collections/{layer.id}/tiles/{MATRIX_SET}",
                        },
                        {
                            "rel": "item",
                            "type": MVT,
                            "templated": True,
                            "href": f"{base}/collections/{layer.id}/tiles/{MATRIX_SET}/"
                            "{tileMatrix}/{tileRow}/{tileCol}",
                        },
                    ],
                }
            ]
        }

    @router.get(
        "/collections/{collectionId}/tiles/{tileMatrixSetId}",
        summary="Tileset metadata of a collection",
    )
    def collection_tileset(
        request: Request, collectionId: str, tileMatrixSetId: str
    ) -> dict[str, Any]:
        layer = collection_layer(collectionId)
        _matrix_set(tileMatrixSetId)
        here = f"{str(request.base_url).rstrip('/')}/collections/{layer.id}/tiles/{MATRIX_SET}"
        return _tileset(here, [layer.id])

    @router.get("/map/tiles/{tileMatrixSetId}", summary="Tileset metadata of one-map tiles")
    def map_tileset(
        request: Request, tileMatrixSetId: str, collections: CollectionsQuery = None
    ) -> dict[str, Any]:
        _matrix_set(tileMatrixSetId)
        here = f"{str(request.base_url).rstrip('/')}/map/tiles/{MATRIX_SET}"
        return _tileset(here, _collections(collections))

    @router.get(
        "/collections/{collectionId}/tiles/{tileMatrixSetId}/tilejson.json",
        summary="TileJSON 3.0 of a collection's tiles",
    )
    def collection_tilejson(
        request: Request,
        collectionId: str,
        tileMatrixSetId: str,
    ) -> dict[str, Any]:
        layer = collection_layer(collectionId)
        _matrix_set(tileMatrixSetId)
        base = str(request.base_url).rstrip("/")
        template = f"{base}/collections/{layer.id}/tiles/{MATRIX_SET}/{{z}}/{{y}}/{{x}}"
        return _tilejson(request, [layer.id], template, url)

    @router.get(
        "/collections/{collectionId}/tiles/{tileMatrixSetId}/{z}/{y}/{x}",
        summary="One vector tile of a collection",
        response_class=Response,
    )
    def collection_tile(
        request: Request,
        collectionId: str,
        tileMatrixSetId: str,
        z: int,
        y: int,
        x: int,
    ) -> Response:
        layer = collection_layer(collectionId)
        _matrix_set(tileMatrixSetId)
        return answer(request, [layer.id], z, x, y)

    @router.get(
        "/map/tiles/{tileMatrixSetId}/tilejson.json", summary="TileJSON 3.0 of the one-map tiles"
    )
    def map_tilejson(
        request: Request,
        tileMatrixSetId: str,
        collections: CollectionsQuery = None,
    ) -> dict[str, Any]:
        _matrix_set(tileMatrixSetId)
        names = _collections(collections)
        base = str(request.base_url).rstrip("/")
        query = f"?collections={','.join(names)}"
        template = f"{base}/map/tiles/{MATRIX_SET}/{{z}}/{{y}}/{{x}}{query}"
        return _tilejson(request, names, template, url)

    @router.get(
        "/map/tiles/{tileMatrixSetId}/{z}/{y}/{x}",
        response_class=Response,
        summary="One-map vector tile: a layer per collection",
    )
    def map_tile(
        request: Request,
        tileMatrixSetId: str,
        z: int,
        y: int,
        x: int,
        collections: CollectionsQuery = None,
    ) -> Response:
        _matrix_set(tileMatrixSetId)
        return answer(request, _collections(collections), z, x, y)

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
