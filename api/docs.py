"""The API's own documentation, offline: Swagger UI, ReDoc and an OpenAPI 3.0 document.

Swagger UI's assets come with the ``swagger-ui-bundle-v2`` Python package; ReDoc's standalone
bundle is fetched once from the npm registry at set-up (``scripts/vendor-redoc.sh``) into
``api/static/vendor``. Nothing is loaded from a CDN, so the pages work on an isolated network.

The OpenAPI document says what the API answers, so that a client (or a fuzzer) can rely on it:
every problem an operation can answer is listed as ``application/problem+json`` by one table
(:data:`PROBLEMS`: a bad parameter is a 400 — FastAPI's 422 is never sent, :mod:`api.errors`
maps validation errors to 400 —, a missing resource 404, a body too large 413, the database
away 503), answers are typed as served (GeoJSON ``application/geo+json``, tiles
``application/vnd.mapbox-vector-tile`` ...), and it is written as
OpenAPI 3.0 (OGC API - Features ``oas30``): JSON Schema 2020-12 forms FastAPI emits are
rewritten into their 3.0 equivalents (``nullable``, boolean ``exclusiveMinimum`` ...).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import swagger_ui_bundle
from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, HTMLResponse, Response

from api.errors import PROBLEM, PROBLEM_SCHEMA, NotFoundError, problem_responses
from api.features import OPENAPI_JSON
from layers import access
from layers.catalog import COLLECTIONS

SWAGGER_UI = Path(swagger_ui_bundle.swagger_ui_path)
REDOC = Path(__file__).parent / "static" / "vendor" / "redoc.standalone.js"
OPENAPI_VERSION = "3.0.3"
_REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"
_ASSETS = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon-32x32.png": "image/png",
}


def routes(title: str) -> APIRouter:
    """Build ``/docs`` (Swagger UI), ``/redoc`` (ReDoc) and their assets, served locally.

    Parameters
    ----------
    title
        The API's title, for the pages.

    Returns
    -------
    fastapi.APIRouter
        The pages (left out of the OpenAPI document).
    """
    router = APIRouter(include_in_schema=False)

    @router.get("/docs")
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="openapi.json",
            title=f"{title} — API",
            swagger_js_url="docs/assets/swagger-ui-bundle.js",
            swagger_css_url="docs/assets/swagger-ui.css",
            swagger_favicon_url="docs/assets/favicon-32x32.png",
        )

    @router.get("/docs/assets/{name}")
    def swagger_asset(name: str) -> FileResponse:
        if name not in _ASSETS:
            raise NotFoundError(f"no documentation asset {name!r}", parameter="name")
        return FileResponse(SWAGGER_UI / name, media_type=_ASSETS[name])

    @router.get("/redoc")
    def redoc() -> HTMLResponse:
        if not REDOC.is_file():
            raise NotFoundError(
                "ReDoc's bundle is not installed here: run scripts/vendor-redoc.sh", parameter=None
            )
        return get_redoc_html(
            openapi_url="openapi.json",
            title=f"{title} — API",
            redoc_js_url="redoc/redoc.standalone.js",
            redoc_favicon_url="docs/assets/favicon-32x32.png",
            with_google_fonts=False,
        )

    @router.get("/redoc/redoc.standalone.js")
    def redoc_bundle() -> Response:
        if not REDOC.is_file():
            raise NotFoundError("ReDoc's bundle is not installed here", parameter=None)
        # the bundle's footer logo is the one thing it takes from a CDN: an empty image instead
        text = REDOC.read_text(encoding="utf-8").replace(_REDOC_LOGO, "data:,")
        return Response(text, media_type="text/javascript")

    return router


def install(app: FastAPI) -> None:
    """Make ``app.openapi()`` the API's OpenAPI 3.0 document, matching what it answers.

    Every operation's 422 becomes a 400 problem+json; the landing page (``/``) is described;
    the document is built once and kept. Asked within a request, it is the caller's: only the
    collections it may read (:func:`for_caller`).

    Parameters
    ----------
    app
        The application, with every router included.
    """
    seen: dict[tuple[tuple[str, ...], tuple[str, ...]], dict[str, Any]] = {}

    def openapi() -> dict[str, Any]:
        if not app.openapi_schema:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            app.openapi_schema = describe(schema)
        grant = access.current()  # the caller of the request that asks for the document
        if grant is None:
            return app.openapi_schema
        readable = tuple(grant.visible(list(COLLECTIONS)))
        editable = tuple(i for i in readable if grant.may(i, "edit"))
        key = (readable, editable)
        if key not in seen:
            if len(seen) > 100:
                seen.clear()
            seen[key] = for_caller(app.openapi_schema, readable, editable)
        return seen[key]

    app.openapi = openapi  # type: ignore[method-assign]


def for_caller(
    document: dict[str, Any], readable: Sequence[str], editable: Sequence[str]
) -> dict[str, Any]:
    """Narrow the document to what one caller may see: its collections, its writes.

    Parameters
    ----------
    document
        The whole document (:func:`describe`).
    readable
        Collections the caller may read: the only values of every ``collectionId``.
    editable
        Collections it may edit; without any, the operations that write a collection's
        features are left out.

    Returns
    -------
    dict
        A new document; ``document`` is not changed.
    """
    narrowed = copy.deepcopy(document)
    for path, operations in list(narrowed["paths"].items()):
        for method in list(operations):
            operation = operations[method]
            if not isinstance(operation, dict):
                continue
            if (
                not editable
                and path.startswith("/collections/{collectionId}/items")
                and (method in ("post", "put", "patch", "delete"))
            ):
                del operations[method]
                continue
            for parameter in operation.get("parameters", []):
                if parameter.get("name") == "collectionId" and parameter.get("in") == "path":
                    values = editable if method in ("post", "put", "patch", "delete") else readable
                    parameter.setdefault("schema", {})["enum"] = list(values)
        if not operations:
            del narrowed["paths"][path]
    return narrowed


def takes_input(operation: dict[str, Any]) -> bool:
    """Tell whether an operation takes parameters or a body (so a bad one is a 400).

    Parameters
    ----------
    operation
        An OpenAPI operation object.

    Returns
    -------
    bool
        True when it declares a parameter or a request body.
    """
    return bool(operation.get("parameters")) or "requestBody" in operation


def names_a_resource(operation: dict[str, Any]) -> bool:
    """Tell whether an operation has a path parameter (a resource that may not exist: 404).

    Parameters
    ----------
    operation
        An OpenAPI operation object.

    Returns
    -------
    bool
        True when one of its parameters is ``in: path``.
    """
    return any(p.get("in") == "path" for p in operation.get("parameters", []))


def reads_a_body(operation: dict[str, Any]) -> bool:
    """Tell whether an operation reads a request body (which may be too large: 413).

    Parameters
    ----------
    operation
        An OpenAPI operation object.

    Returns
    -------
    bool
        True when it declares a request body.
    """
    return "requestBody" in operation


def writes(operation: dict[str, Any]) -> bool:
    """Tell whether an operation changes something (a POST, PUT, PATCH or DELETE).

    Parameters
    ----------
    operation
        An OpenAPI operation object (its ``operationId`` ends with its method).

    Returns
    -------
    bool
        True for a write.
    """
    method = str(operation.get("operationId", "")).rsplit("_", 1)[-1]
    return method in ("post", "put", "patch", "delete")


def everywhere(operation: dict[str, Any]) -> bool:
    """Match every operation (the guard and the store stand behind each of them).

    Parameters
    ----------
    operation
        An OpenAPI operation object.

    Returns
    -------
    bool
        True.
    """
    return True


#: The problems (``application/problem+json``) the API can answer, and which operations can:
#: one line per status, applied to every operation of the document by :func:`describe` (a
#: route's own description of the status, if any, is kept).
PROBLEMS: list[tuple[int, Callable[[dict[str, Any]], bool]]] = [
    (400, takes_input),  # FastAPI's 422 is never sent: api.errors answers 400
    (404, names_a_resource),
    (409, takes_input),  # layers.errors.MissingInputError: the city lacks what answering needs
    (413, reads_a_body),  # api.limits: a body over TWIN_MAX_BODY_BYTES
    (401, everywhere),  # api.security: a bad or expired token, or a layer that needs sign-in
    (403, writes),  # api.security: signed in, but not permitted to change that layer
    (500, everywhere),  # a defect; every error is still a problem, never a traceback
    (503, everywhere),  # the database does not answer (api.limits.StoreOutage), Retry-After
]
#: Answers whose media type FastAPI cannot see (a route answering a ``Response`` it builds):
#: operation ``(method, path)`` -> status -> the media types it is served as, replacing what
#: the generated document says.
SERVED: dict[tuple[str, str], dict[str, list[str]]] = {
    ("get", "/api"): {"200": [OPENAPI_JSON]},
}
_MEANING: dict[int, dict[str, Any]] = {
    409: {
        "description": "The city lacks an input the answer needs (no districts, no pipes of "
        "the network, no resources of the kind); ``missing`` names it, the detail says how "
        "to load it"
    },
    413: {"description": "The request body is larger than the API reads (TWIN_MAX_BODY_BYTES)"},
}
_HEADERS: dict[int, dict[str, Any]] = {
    503: {
        "Retry-After": {
            "description": "Seconds to wait before trying again",
            "schema": {"type": "integer"},
        }
    },
}


def describe(schema: dict[str, Any]) -> dict[str, Any]:
    """Rewrite FastAPI's OpenAPI document into what the API answers, as OpenAPI 3.0.

    Parameters
    ----------
    schema
        FastAPI's document (OpenAPI 3.1).

    Returns
    -------
    dict
        The document: FastAPI's 422 dropped; every operation lists the problems
        :data:`PROBLEMS` says it can answer (400 where it takes input, 404 where a path
        parameter may miss, 413 where it reads a body, 503 with ``Retry-After``), each as
        ``application/problem+json`` with the ``Problem`` schema; the media types of
        :data:`SERVED` applied; the landing page described; JSON Schema written the OpenAPI
        3.0 way.
    """
    schema["paths"] = {"/": _LANDING, **schema.get("paths", {})}
    problem_ref = {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            for status, applies in PROBLEMS:
                if applies(operation):
                    meaning = _MEANING.get(status) or problem_responses(status)[status]
                    responses.setdefault(str(status), {"description": meaning["description"]})
            for code, response in responses.items():
                if code.startswith(("4", "5")):
                    response["content"] = dict(problem_ref)
                    if int(code) in _HEADERS:
                        response.setdefault("headers", _HEADERS[int(code)])
            for code, types in SERVED.get((method, path), {}).items():
                documented = responses[code].get("content", {})
                fallback = {"schema": {"type": "object"}}
                responses[code]["content"] = {t: documented.get(t, fallback) for t in types}
            operation["responses"] = dict(sorted(responses.items()))
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    components["Problem"] = PROBLEM_SCHEMA
    schema["openapi"] = OPENAPI_VERSION
    downgraded: dict[str, Any] = _downgrade(schema)
    return downgraded


_LANDING = {
    "get": {
        "tags": ["features"],
        "summary": "Landing page: the map viewer (HTML), or the OGC API landing page (JSON)",
        "operationId": "landing",
        "parameters": [
            {
                "name": "f",
                "in": "query",
                "required": False,
                "schema": {"type": "string", "enum": ["json", "html"]},
                "description": "json: the OGC API landing page; html (default): the viewer",
            }
        ],
        "responses": {
            "200": {
                "description": "The landing page",
                "content": {
                    "application/json": {"schema": {"type": "object"}},
                    "text/html": {"schema": {"type": "string"}},
                },
            }
        },
    }
}


def _downgrade(node: Any) -> Any:
    """Rewrite JSON Schema 2020-12 forms (OpenAPI 3.1) into OpenAPI 3.0's schema dialect."""
    if isinstance(node, list):
        return [_downgrade(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _downgrade(value) for key, value in node.items()}
    for key in ("anyOf", "oneOf"):
        options = out.get(key)
        if isinstance(options, list) and {"type": "null"} in options:
            rest = [option for option in options if option != {"type": "null"}]
            del out[key]
            if len(rest) == 1:
                out |= rest[0]
            else:
                out[key] = rest
            out["nullable"] = True
    if isinstance(out.get("type"), list):  # ["string", "null"]
        kinds = [kind for kind in out["type"] if kind != "null"]
        if len(kinds) < len(out["type"]):
            out["nullable"] = True
        out["type"] = kinds[0] if len(kinds) == 1 else kinds
    if "const" in out and "in" not in out:
        out["enum"] = [out.pop("const")]
    for bound, flag in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(out.get(bound), int | float) and not isinstance(out[bound], bool):
            out[flag] = out[bound]
            out[bound] = True
    if isinstance(out.get("examples"), list) and "schema" not in node and "in" not in node:
        examples = out.pop("examples")
        if examples:
            out["example"] = examples[0]
    return out
