"""OGC API - Features: Part 1 core and GeoJSON, Part 2 CRS, Part 3 filters in CQL2 text and JSON.

Every layer is a collection, the live read-only ones too (``live_congestion``, after the
stored layers). ``datetime`` is answered from ``valid_from``/``valid_to``: an instant gives the
versions valid then, so it is the twin's "as of" query.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

import pyarrow as pa
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse, Response

from api.errors import NotFoundError, ProblemError, problem_responses
from api.parameters import EVERYWHERE
from layers import access, editing
from layers.catalog import COLLECTIONS, Layer
from layers.cql2 import CLASSES, property_schemas, queryables
from layers.features import (
    CRS84,
    DEFAULT_LIMIT,
    MAX_LIMIT,
    MAX_OFFSET,
    extent,
    get_feature,
    parse_bbox,
    query_arrow,
    query_features,
    resolve_crs,
    supported_crs,
    temporal_extent,
)

GEOJSON = "application/geo+json"
ARROW = "application/vnd.apache.arrow.stream"
SCHEMA_JSON = "application/schema+json"
OPENAPI_JSON = "application/vnd.oai.openapi+json;version=3.0"
_FEATURES = "http://www.opengis.net/spec/ogcapi-features"
#: Conformance classes this module implements (the app answers the union of every router's).
CONFORMANCE = [
    f"{_FEATURES}-1/1.0/conf/core",
    f"{_FEATURES}-1/1.0/conf/geojson",
    f"{_FEATURES}-1/1.0/conf/oas30",
    f"{_FEATURES}-2/1.0/conf/crs",
    f"{_FEATURES}-3/1.0/conf/queryables",
    f"{_FEATURES}-3/1.0/conf/filter",
    f"{_FEATURES}-3/1.0/conf/features-filter",
    *(f"http://www.opengis.net/spec/cql2/1.0/conf/{name}" for name in CLASSES),
    # Part 4 (draft 1.0), answered by api.editing; reads of one item carry the ETag
    f"{_FEATURES}-4/1.0/conf/create-replace-delete",
    f"{_FEATURES}-4/1.0/conf/update",
    f"{_FEATURES}-4/1.0/conf/optimistic-locking-etags",
    f"{_FEATURES}-4/1.0/conf/features",
]
_REL = "http://www.opengis.net/def/rel/ogc/1.0"
GREGORIAN = "http://www.opengis.net/def/uom/ISO-8601/0/Gregorian"
#: Query parameters of the items request; any other one is refused (Part 1 /req/core).
ITEMS_PARAMETERS = frozenset(
    {"bbox", "bbox-crs", "datetime", "limit", "offset", "crs", "filter", "filter-lang"}
    | {"filter-crs", "f"}
    | EVERYWHERE  # ?scenario= (api.scenarios)
)


class GeoJSONResponse(JSONResponse):
    """A JSON answer typed ``application/geo+json``."""

    media_type = GEOJSON


class SchemaResponse(JSONResponse):
    """A JSON Schema answer typed ``application/schema+json``."""

    media_type = SCHEMA_JSON


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _served(request: Request, path: str) -> bool:
    """Whether the app answers ``path`` (a route template), so a link to it may be given."""
    return path in request.app.openapi()["paths"]


def _collection(request: Request, layer: Layer, url: str) -> dict[str, Any]:
    base = _base(request)
    here = f"{base}/collections/{layer.id}"
    bbox = extent(layer.id, url=url)
    links = [
        {"rel": "self", "type": "application/json", "href": here},
        {"rel": "items", "type": GEOJSON, "href": f"{here}/items"},
        {"rel": f"{_REL}/queryables", "type": SCHEMA_JSON, "href": f"{here}/queryables"},
        {"rel": f"{_REL}/schema", "type": SCHEMA_JSON, "href": f"{here}/schema"},
        # GDAL (3.6) reads field types from a GeoJSON feature schema behind "describedBy"
        {"rel": "describedBy", "type": SCHEMA_JSON, "href": f"{here}/feature-schema"},
    ]
    if _served(request, "/collections/{collectionId}/tiles"):
        links.append(
            {"rel": f"{_REL}/tilesets-vector", "type": "application/json", "href": f"{here}/tiles"}
        )
    return {
        "id": layer.id,
        "title": layer.title,
        "description": layer.description,
        "itemType": "feature",
        "crs": list(supported_crs()),
        "storageCrs": CRS84,
        "extent": {
            "spatial": {"bbox": [bbox] if bbox else [], "crs": CRS84},
            # the versions' validity: what datetime selects on (valid_from, valid_to)
            **(
                {"temporal": {"interval": [period], "trs": GREGORIAN}}
                if (period := temporal_extent(layer.id, url=url))
                else {}
            ),
        },
        "links": links,
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
    if collection_id not in COLLECTIONS:
        visible = ", ".join(access.visible(list(COLLECTIONS)))
        raise NotFoundError(
            f"unknown collection {collection_id!r}; collections: {visible}",
            parameter="collectionId",
        )
    access.require(collection_id)  # a hidden collection answers as an unknown one
    return COLLECTIONS[collection_id]


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
            {"rel": "service-desc", "type": OPENAPI_JSON, "href": f"{base}/api"},
            {"rel": "service-doc", "type": "text/html", "href": f"{base}/docs"},
            {"rel": "conformance", "type": "application/json", "href": f"{base}/conformance"},
            {"rel": "data", "type": "application/json", "href": f"{base}/collections"},
        ]
        + [
            {"rel": rel, "type": "application/json", "href": f"{base}{path}"}
            for path, rel in (
                ("/tiles", f"{_REL}/tilesets-vector"),
                ("/tileMatrixSets", f"{_REL}/tiling-schemes"),
                ("/styles", f"{_REL}/styles"),
            )
            if _served(request, path)
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
    not_found = problem_responses(404)
    bad_or_not_found = problem_responses(400, 404)

    @router.get("/conformance", summary="Conformance classes")
    def conformance(request: Request) -> dict[str, Any]:
        declared = getattr(request.app.state, "conformance", None)
        return {"conformsTo": list(declared if declared is not None else CONFORMANCE)}

    @router.get(
        "/api",
        summary="The OpenAPI description of this API",
        response_class=JSONResponse,
        responses={200: {"content": {OPENAPI_JSON: {"schema": {"type": "object"}}}}},
    )
    def api_description(request: Request) -> JSONResponse:
        return JSONResponse(request.app.openapi(), media_type=OPENAPI_JSON)

    @router.get("/collections", summary="The layers, as collections")
    def collections(request: Request) -> dict[str, Any]:
        base = _base(request)
        return {
            "links": [{"rel": "self", "type": "application/json", "href": f"{base}/collections"}],
            "collections": [
                _collection(request, COLLECTIONS[layer_id], url)
                for layer_id in access.visible(list(COLLECTIONS))  # what the caller may read
            ],
        }

    @router.get("/collections/{collectionId}", summary="One collection", responses=not_found)
    def collection(request: Request, collectionId: str) -> dict[str, Any]:
        return _collection(request, collection_layer(collectionId), url)

    @router.get(
        "/collections/{collectionId}/queryables",
        summary="What a filter may name, with JSON Schema types and formats",
        response_class=SchemaResponse,
        responses={200: {"content": {SCHEMA_JSON: {"schema": {"type": "object"}}}}, **not_found},
    )
    def get_queryables(request: Request, collectionId: str) -> SchemaResponse:
        layer = collection_layer(collectionId)
        return SchemaResponse(
            {
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "$id": f"{_base(request)}/collections/{layer.id}/queryables",
                "type": "object",
                "title": layer.title,
                "properties": _with_roles(queryables(layer)),
                "additionalProperties": False,
            }
        )

    @router.get(
        "/collections/{collectionId}/schema",
        summary="The schema of the collection's features (OGC API - Features Part 5 draft)",
        response_class=SchemaResponse,
        responses={200: {"content": {SCHEMA_JSON: {"schema": {"type": "object"}}}}, **not_found},
    )
    def get_schema(request: Request, collectionId: str) -> SchemaResponse:
        layer = collection_layer(collectionId)
        properties = {
            "id": {"type": "string", "x-ogc-role": "id"},
            "geometry": queryables(layer)["geometry"],
            **_with_roles(property_schemas(layer)),
        }
        return SchemaResponse(
            {
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "$id": f"{_base(request)}/collections/{layer.id}/schema",
                "type": "object",
                "title": layer.title,
                "description": layer.description,
                "properties": properties,
                "additionalProperties": True,  # attributes outside the catalog, from props
            }
        )

    @router.get(
        "/collections/{collectionId}/feature-schema",
        summary="The JSON Schema of one GeoJSON feature of the collection (for GDAL)",
        response_class=SchemaResponse,
        responses={200: {"content": {SCHEMA_JSON: {"schema": {"type": "object"}}}}, **not_found},
    )
    def get_feature_schema(request: Request, collectionId: str) -> SchemaResponse:
        layer = collection_layer(collectionId)
        # GDAL's OAPIF driver (3.6 to 3.10 alike) reads this schema as an example: "integer"
        # becomes a 1, so a 32-bit Integer field whatever its format or maximum, and a 64-bit
        # value overflows (left out, the field was guessed from the first page, just as
        # wrongly). As "number" it becomes Real: a double holds every id up to 2^53 exactly.
        # The collection's own schema and queryables keep "integer" with "format": "int64".
        properties = property_schemas(layer)
        for field in layer.fields:
            if field.kind == "bigint":
                properties[field.name] = {
                    **properties[field.name],
                    "type": "number",
                    "format": "int64",
                    "multipleOf": 1,
                }
        return SchemaResponse(
            {
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "$id": f"{_base(request)}/collections/{layer.id}/feature-schema",
                "type": "object",
                "title": f"{layer.title}: a GeoJSON feature",
                "required": ["type", "geometry", "properties"],
                "properties": {
                    "type": {"type": "string", "enum": ["Feature"]},
                    "id": {"type": "string"},
                    "geometry": queryables(layer)["geometry"],
                    "properties": {
                        "type": "object",
                        "properties": properties,
                        "additionalProperties": True,
                    },
                },
            }
        )

    @router.get(
        "/collections/{collectionId}/items",
        summary="Features, filtered and paged",
        response_class=GeoJSONResponse,
        responses={
            200: {
                "description": "A GeoJSON FeatureCollection (or an Arrow stream with f=arrow)",
                "content": {
                    GEOJSON: {"schema": {"type": "object"}},
                    ARROW: {"schema": {"type": "string", "format": "binary"}},
                },
            },
            **bad_or_not_found,
        },
    )
    def items(
        request: Request,
        collectionId: str,
        bbox: Annotated[
            str | None,
            Query(
                description="minx,miny,maxx,maxy or minx,miny,minz,maxx,maxy,maxz (in "
                "bbox-crs; a geographic box with minx > maxx crosses the antimeridian)"
            ),
        ] = None,
        bbox_crs: Annotated[
            str | None, Query(alias="bbox-crs", description="CRS of bbox; CRS84 by default")
        ] = None,
        datetime: Annotated[
            str | None,
            Query(
                description="An instant, or an interval a/b with '..' or nothing for an open "
                "end: the versions valid then"
            ),
        ] = None,
        limit: Annotated[
            int, Query(ge=1, le=MAX_LIMIT, description="Features per page")
        ] = DEFAULT_LIMIT,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
        crs: Annotated[str | None, Query(description="Output CRS; CRS84 by default")] = None,
        filter: Annotated[str | None, Query(description="A CQL2 filter, in filter-lang")] = None,
        filter_lang: Annotated[
            Literal["cql2-text", "cql2-json"], Query(alias="filter-lang")
        ] = "cql2-text",
        filter_crs: Annotated[
            str | None,
            Query(alias="filter-crs", description="CRS of the filter's geometries; CRS84"),
        ] = None,
        f: Annotated[
            Literal["json", "geojson", "arrow"] | None,
            Query(description="geojson (default) or arrow"),
        ] = None,
    ) -> Response:
        layer = collection_layer(collectionId)
        unknown = sorted(set(request.query_params) - ITEMS_PARAMETERS)
        if unknown:
            raise ProblemError(
                f"unknown query parameter {unknown[0]!r}; known: "
                f"{', '.join(sorted(ITEMS_PARAMETERS))} (to select by a property, use filter)",
                parameter=unknown[0],
            )
        repeated = sorted(
            k for k in set(request.query_params) if len(request.query_params.getlist(k)) > 1
        )
        if repeated:
            raise ProblemError(
                f"query parameter {repeated[0]!r} is given more than once; give it once",
                parameter=repeated[0],
            )
        out_crs = resolve_crs(crs, "crs")
        options: dict[str, Any] = {
            "bbox": parse_bbox(bbox),
            "bbox_crs": bbox_crs,
            "datetime_value": datetime,
            "filter_text": filter,
            "filter_lang": filter_lang,
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

    @router.get(
        "/collections/{collectionId}/items/{featureId:path}",
        summary="One feature",
        response_class=GeoJSONResponse,
        responses={200: {"content": {GEOJSON: {"schema": {"type": "object"}}}}, **bad_or_not_found},
    )
    def item(
        collectionId: str,
        featureId: str,
        crs: Annotated[str | None, Query(description="Output CRS; CRS84 by default")] = None,
        if_none_match: Annotated[str | None, Header(alias="If-None-Match")] = None,
    ) -> Response:
        layer = collection_layer(collectionId)
        out_crs = resolve_crs(crs, "crs")
        # the ETag (Part 4: the version an edit names in If-Match) is read before the body: a
        # write between the reads makes it name the older version, so an edit is refused
        etag = editing.current_etag(layer.id, featureId, url=url)
        headers = {"Content-Crs": f"<{out_crs.uri}>", **({"ETag": etag} if etag else {})}
        if etag and if_none_match and editing.none_match(if_none_match, etag):
            return Response(status_code=304, headers=headers)
        feature = get_feature(layer.id, featureId, crs=crs, url=url)
        if feature is None:
            raise NotFoundError(f"no feature {featureId!r} in {layer.id}", parameter="featureId")
        return GeoJSONResponse(feature, headers=headers)

    return router


_ROLES = {
    "valid_from": "primary-interval-start",
    "valid_to": "primary-interval-end",
}


def _with_roles(properties: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Mark the validity period as the features' primary temporal extent (Part 5 roles)."""
    return {
        name: {**schema, "x-ogc-role": _ROLES[name]} if name in _ROLES else schema
        for name, schema in properties.items()
    }
