"""OGC API - Features (Part 1 core + GeoJSON, Part 2 CRS, Part 3 queryables and CQL2-text).

Every layer is a collection. ``datetime`` is answered from ``valid_from``/``valid_to``: an
instant gives the versions valid then, so it is the twin's "as of" query.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

import pyarrow as pa
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from api.errors import NotFoundError, ProblemError
from layers.catalog import LAYERS, Layer
from layers.cql2 import queryables
from layers.features import (
    CRS84,
    MAX_LIMIT,
    MAX_OFFSET,
    extent,
    get_feature,
    query_arrow,
    query_features,
    resolve_crs,
    supported_crs,
)

GEOJSON = "application/geo+json"
ARROW = "application/vnd.apache.arrow.stream"
CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-2/1.0/conf/crs",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/features-filter",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-operators",
]


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _openapi_type(request: Request) -> str:
    """Return the API description's media type, naming the OpenAPI version it is written in.

    FastAPI writes OpenAPI 3.1, so the API does not claim Part 1's ``oas30`` class either.
    """
    major, minor = request.app.openapi_version.split(".")[:2]
    return f"application/vnd.oai.openapi+json;version={major}.{minor}"


def _collection(request: Request, layer: Layer, url: str) -> dict[str, Any]:
    base = _base(request)
    bbox = extent(layer.id, url=url)
    return {
        "id": layer.id,
        "title": layer.title,
        "description": layer.description,
        "itemType": "feature",
        "crs": list(supported_crs()),
        "storageCrs": CRS84,
        "extent": {"spatial": {"bbox": [bbox] if bbox else [], "crs": CRS84}},
        "links": [
            {"rel": "self", "type": "application/json", "href": f"{base}/collections/{layer.id}"},
            {"rel": "items", "type": GEOJSON, "href": f"{base}/collections/{layer.id}/items"},
            {
                "rel": "http://www.opengis.net/def/rel/ogc/1.0/queryables",
                "type": "application/schema+json",
                "href": f"{base}/collections/{layer.id}/queryables",
            },
        ],
    }


def collection_layer(collection_id: str) -> Layer:
    """Return the layer a collection id names, or raise a 404 problem naming the parameter.

    Parameters
    ----------
    collection_id
        The ``collectionId`` path parameter.

    Returns
    -------
    Layer
        The layer.
    """
    if collection_id not in LAYERS:
        raise NotFoundError(
            f"unknown collection {collection_id!r}; collections: {', '.join(LAYERS)}",
            parameter="collectionId",
        )
    return LAYERS[collection_id]


def _bbox(value: str | None) -> tuple[float, float, float, float] | None:
    if value is None:
        return None
    try:
        numbers = [float(v) for v in value.split(",")]
    except ValueError:
        raise ProblemError("bbox: expected four numbers", parameter="bbox") from None
    if len(numbers) != 4:
        raise ProblemError("bbox: expected four numbers (2D)", parameter="bbox")
    return numbers[0], numbers[1], numbers[2], numbers[3]


def landing(request: Request) -> dict[str, Any]:
    """Return the OGC landing page document.

    Parameters
    ----------
    request
        The request (for absolute links).

    Returns
    -------
    dict
        Title and links to the API description, conformance and collections.
    """
    base = _base(request)
    return {
        "title": request.app.title,
        "description": "OGC API - Features of the city's layers",
        "links": [
            {"rel": "self", "type": "application/json", "href": f"{base}/?f=json"},
            {
                "rel": "service-desc",
                "type": _openapi_type(request),
                "href": f"{base}/api",
            },
            {"rel": "conformance", "type": "application/json", "href": f"{base}/conformance"},
            {"rel": "data", "type": "application/json", "href": f"{base}/collections"},
        ],
    }


def routes(url: str) -> APIRouter:
    """Build the OGC API - Features endpoints over the store at ``url``.

    Parameters
    ----------
    url
        Database URL.

    Returns
    -------
    fastapi.APIRouter
        The endpoints.
    """
    router = APIRouter(tags=["features"])

    @router.get("/conformance", summary="Conformance classes")
    def conformance() -> dict[str, Any]:
        return {"conformsTo": CONFORMANCE}

    @router.get("/api", summary="The OpenAPI 3 description", include_in_schema=False)
    def api_description(request: Request) -> JSONResponse:
        return JSONResponse(request.app.openapi(), media_type=_openapi_type(request))

    @router.get("/collections", summary="The layers, as collections")
    def collections(request: Request) -> dict[str, Any]:
        base = _base(request)
        return {
            "links": [{"rel": "self", "type": "application/json", "href": f"{base}/collections"}],
            "collections": [_collection(request, layer, url) for layer in LAYERS.values()],
        }

    @router.get("/collections/{collectionId}", summary="One collection")
    def collection(request: Request, collectionId: str) -> dict[str, Any]:
        return _collection(request, collection_layer(collectionId), url)

    @router.get("/collections/{collectionId}/queryables", summary="What a filter may name")
    def get_queryables(request: Request, collectionId: str) -> JSONResponse:
        layer = collection_layer(collectionId)
        schema = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"{_base(request)}/collections/{layer.id}/queryables",
            "type": "object",
            "title": layer.title,
            "properties": {
                "geometry": {"$ref": "https://geojson.org/schema/Geometry.json"},
                **{name: {"type": kind} for name, kind in queryables(layer).items()},
            },
            "additionalProperties": False,
        }
        return JSONResponse(schema, media_type="application/schema+json")

    @router.get("/collections/{collectionId}/items", summary="Features, filtered and paged")
    def items(
        request: Request,
        collectionId: str,
        bbox: Annotated[str | None, Query(description="minx,miny,maxx,maxy")] = None,
        bbox_crs: Annotated[str | None, Query(alias="bbox-crs")] = None,
        datetime: Annotated[str | None, Query(description="Instant or interval a/b")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
        crs: str | None = None,
        filter: Annotated[str | None, Query(description="CQL2-text")] = None,
        filter_lang: Annotated[Literal["cql2-text"] | None, Query(alias="filter-lang")] = None,
        filter_crs: Annotated[str | None, Query(alias="filter-crs")] = None,
        f: Annotated[str | None, Query(description="geojson (default) or arrow")] = None,
    ) -> Response:
        layer = collection_layer(collectionId)
        if f not in (None, "json", "geojson", "arrow"):
            raise ProblemError("f: use geojson or arrow", parameter="f")
        out_crs = resolve_crs(crs, "crs")
        options: dict[str, Any] = {
            "bbox": _bbox(bbox),
            "bbox_crs": bbox_crs,
            "datetime_value": datetime,
            "filter_text": filter,
            "limit": limit,
            "offset": offset,
            "crs": crs,
            "filter_crs": filter_crs,
            "url": url,
        }
        if f == "arrow":
            table = query_arrow(layer.id, **options)
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table)
            return Response(
                sink.getvalue().to_pybytes(),
                media_type=ARROW,
                headers={"Content-Crs": f"<{out_crs.uri}>"},
            )
        page = query_features(layer.id, **options)
        here = f"{_base(request)}/collections/{layer.id}/items"
        args = {k: v for k, v in request.query_params.items() if k not in ("offset",)}
        links = [
            {"rel": "self", "type": GEOJSON, "href": f"{here}?{urlencode(request.query_params)}"}
        ]
        if offset + page.returned < page.matched:
            query = urlencode({**args, "offset": offset + page.returned, "limit": limit})
            links.append({"rel": "next", "type": GEOJSON, "href": f"{here}?{query}"})
        if offset > 0:
            query = urlencode({**args, "offset": max(0, offset - limit), "limit": limit})
            links.append({"rel": "prev", "type": GEOJSON, "href": f"{here}?{query}"})
        # the features arrive as JSON text from PostGIS and are passed through untouched
        body = (
            '{"type":"FeatureCollection","features":'
            + page.features_json
            + f',"numberMatched":{page.matched},"numberReturned":{page.returned},'
            + '"links":'
            + json.dumps(links)
            + "}"
        )
        return Response(body, media_type=GEOJSON, headers={"Content-Crs": f"<{out_crs.uri}>"})

    @router.get("/collections/{collectionId}/items/{featureId:path}", summary="One feature")
    def item(collectionId: str, featureId: str, crs: str | None = None) -> JSONResponse:
        layer = collection_layer(collectionId)
        out_crs = resolve_crs(crs, "crs")
        feature = get_feature(layer.id, featureId, crs=crs, url=url)
        if feature is None:
            raise NotFoundError(f"no feature {featureId!r} in {layer.id}", parameter="featureId")
        return JSONResponse(
            feature, media_type=GEOJSON, headers={"Content-Crs": f"<{out_crs.uri}>"}
        )

    return router
