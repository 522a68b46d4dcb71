"""The FastAPI application: the layer catalog, OGC API Features and Tiles, and routing."""

from __future__ import annotations

import html
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import HTMLResponse, JSONResponse

from api import errors, features, incidents, onemap, rasters, routing, tiles, utilities
from layers.catalog import LAYERS, Layer
from layers.queries import layer_counts, ping
from layers.settings import TwinSettings, get_settings
from twin.city import City


def _describe(layer: Layer, count: int) -> dict[str, Any]:
    return {
        "id": layer.id,
        "title": layer.title,
        "description": layer.description,
        "geometry": layer.storage_type,
        "features": count,
        "attributes": [
            {
                "name": f.name,
                "type": f.kind,
                "required": f.required,
                **({"enum": list(f.choices)} if f.choices else {}),
                **({"description": f.description} if f.description else {}),
            }
            for f in layer.fields
        ],
    }


def create_app(settings: TwinSettings | None = None) -> FastAPI:
    """Build the API application.

    Parameters
    ----------
    settings
        Settings to serve with; the environment's by default.

    Returns
    -------
    fastapi.FastAPI
        The application.
    """
    settings = settings or get_settings()
    url = settings.database_url
    app = FastAPI(
        title=f"CityTwin — {settings.city_name}",
        description=(
            "The city's layers in PostGIS: features, tiles, routing, one-map questions, "
            "utility traces, incidents and rasters."
        ),
        version="0.1.0",
    )
    errors.install(app)
    app.add_middleware(GZipMiddleware, minimum_size=1024)
    app.include_router(features.routes(url))
    app.include_router(
        tiles.routes(url, tiles.make_cache(settings.redis_url, settings.tile_cache_mb))
    )
    city = City(url)
    app.include_router(routing.routes(city))
    app.include_router(onemap.routes(city))
    app.include_router(utilities.routes(city))
    app.include_router(incidents.routes(city))
    app.include_router(rasters.routes(city))

    @app.get("/health", summary="Whether the API and its database answer")
    def health() -> dict[str, str]:
        if not ping(url):
            raise errors.ProblemError("the database does not answer", status=503)
        return {"status": "ok"}

    @app.get("/layers", summary="Every layer with its attributes and feature count")
    def list_layers(
        at: str | None = Query(None, description="ISO 8601 moment: count the features then"),
    ) -> list[dict[str, Any]]:
        counts = _counts(url, at)
        return [_describe(layer, counts[layer.id]) for layer in LAYERS.values()]

    @app.get("/layers/{layer_id}", summary="One layer with its attributes and feature count")
    def get_layer(layer_id: str) -> dict[str, Any]:
        if layer_id not in LAYERS:
            raise errors.NotFoundError(
                f"unknown layer {layer_id!r}; known layers: {', '.join(LAYERS)}",
                parameter="layer_id",
            )
        return _describe(LAYERS[layer_id], _counts(url, None)[layer_id])

    @app.get("/", include_in_schema=False, response_model=None)
    def landing(request: Request, f: str | None = None) -> HTMLResponse | JSONResponse:
        accept = request.headers.get("accept", "")
        if f == "json" or (f is None and "json" in accept and "text/html" not in accept):
            return JSONResponse(features.landing(request))
        return HTMLResponse(_landing_page(settings, url))

    return app


def _landing_page(settings: TwinSettings, url: str) -> str:
    """Return the HTML page listing the layers and their counts."""
    counts = layer_counts(url=url)
    rows = "\n".join(
        f"<tr><td><a href='/layers/{layer.id}'>{html.escape(layer.id)}</a></td>"
        f"<td>{html.escape(layer.title)}</td><td>{layer.storage_type}</td>"
        f"<td class='n'>{counts[layer.id]:,}</td></tr>"
        for layer in LAYERS.values()
    )
    title = html.escape(f"CityTwin — {settings.city_name}")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font:15px system-ui,sans-serif;margin:2rem}}td,th{{padding:.2rem .8rem;
text-align:left}}.n{{text-align:right}}</style></head>
<body><h1>{title}</h1>
<table><thead><tr><th>layer</th><th>title</th><th>geometry</th><th class="n">features</th>
</tr></thead><tbody>
{rows}
</tbody></table>
<p><a href="/layers">/layers</a> (JSON) · <a href="/collections">OGC API - Features</a> ·
<a href="/docs">API documentation</a></p>
<p><small>Map data © OpenStreetMap contributors (ODbL); elevation SRTM (public domain).
</small></p>
</body></html>"""


def _counts(url: str, at: str | None) -> dict[str, int]:
    try:
        return layer_counts(at=at, url=url)
    except ValueError as exc:
        raise errors.ProblemError(f"at: {exc}", parameter="at") from exc
