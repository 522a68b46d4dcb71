"""The API's own documentation, offline: Swagger UI, ReDoc and an OpenAPI 3.0 document.

Swagger UI's assets come with the ``swagger-ui-bundle-v2`` Python package; ReDoc's standalone
bundle is fetched once from the npm registry at set-up (``scripts/vendor-redoc.sh``) into
``api/static/vendor``. Nothing is loaded from a CDN, so the pages work on an isolated network.

The OpenAPI document says what the API answers: a bad parameter is a 400 problem+json (FastAPI's
422 is never sent: :mod:`api.errors` maps validation errors to 400), and it is written as
OpenAPI 3.0 (OGC API - Features ``oas30``): JSON Schema 2020-12 forms FastAPI emits are
rewritten into their 3.0 equivalents (``nullable``, boolean ``exclusiveMinimum`` ...).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import swagger_ui_bundle
from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, HTMLResponse, Response

from api.errors import PROBLEM, PROBLEM_SCHEMA, NotFoundError, problem_responses

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
    the document is built once and kept.

    Parameters
    ----------
    app
        The application, with every router included.
    """

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        app.openapi_schema = describe(schema)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def describe(schema: dict[str, Any]) -> dict[str, Any]:
    """Rewrite FastAPI's OpenAPI document into what the API answers, as OpenAPI 3.0.

    Parameters
    ----------
    schema
        FastAPI's document (OpenAPI 3.1).

    Returns
    -------
    dict
        The document: 400 problem+json instead of 422, 404 problem+json on every operation with
        a path parameter, 500 problem+json on every operation,
        the landing page described, JSON Schema written the OpenAPI 3.0 way.
    """
    problem_400 = problem_responses(400)[400]
    problem_500 = problem_responses(500)[500]
    problem_404 = problem_responses(404)[404]
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            parameters = operation.get("parameters", [])
            if responses.pop("422", None) is not None or parameters:
                responses.setdefault("400", problem_400)
            if any(p.get("in") == "path" for p in parameters):  # a resource that may not exist
                responses.setdefault("404", problem_404)
            responses.setdefault("500", problem_500)
            for code, response in responses.items():
                if code.startswith(("4", "5")):
                    response["content"] = {
                        PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}
                    }
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    components["Problem"] = PROBLEM_SCHEMA
    schema["paths"] = {"/": _LANDING, **schema.get("paths", {})}
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
