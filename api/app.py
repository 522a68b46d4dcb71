"""The FastAPI application: viewer, catalog, features, tiles, routing, one map, utilities."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Query
from fastapi.middleware.cors import CORSMiddleware
from fastapi.middleware.gzip import GZipMiddleware

from api import (
    admin,
    docs,
    editing,
    errors,
    features,
    incidents,
    limits,
    live,
    onemap,
    preplans,
    rasters,
    routing,
    scenarios,
    search,
    security,
    sensorthings,
    signals,
    styles,
    tiles,
    utilities,
    viewer,
)
from layers import access
from layers.audit import AuditLog
from layers.catalog import LAYERS, Layer
from layers.database import set_read_urls
from layers.queries import layer_counts, ping
from layers.settings import TwinSettings, get_settings
from twin.city import City
from twin.live.service import LiveService

#: CORS (when ``TWIN_CORS_ORIGINS`` names origins): the methods and request headers a page of
#: another origin may use, and the answer headers its scripts may read.
CORS_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
CORS_HEADERS = (
    "Authorization",
    "Content-Type",
    "If-Match",
    "If-None-Match",
    "X-API-Key",
    "X-Purpose",
)
CORS_EXPOSED = ("ETag", "Location", "Retry-After")


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
    if settings.database_read_urls:  # replicas of the database served, whichever it is
        set_read_urls(url, settings.database_read_urls)
    live_service = LiveService.default(url=url, settings=settings)
    audit_log = AuditLog(url) if settings.audit else None

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        live_service.start()
        try:
            yield
        finally:
            live_service.stop()
            if audit_log is not None:
                audit_log.close()

    app = FastAPI(
        lifespan=lifespan,
        title=f"CityTwin — {settings.city_name}",
        description=(
            "The city's layers in PostGIS: features, tiles, routing, one-map questions, "
            "utility traces, incidents and rasters."
        ),
        version="0.1.0",
        docs_url=None,  # api.docs serves Swagger UI and ReDoc from local assets
        redoc_url=None,
    )
    errors.install(app)
    app.add_middleware(GZipMiddleware, minimum_size=1024)
    scenarios.install(app, url)  # inside the guard: the caller's grant reads the scenario
    security.install(
        app, settings, audit=None if audit_log is None else security.audit_trail(audit_log)
    )
    limits.install(app, settings)  # after the guard: body limit, NUL, database outage first
    app.include_router(security.routes(settings, audit=audit_log))
    app.include_router(features.routes(url))
    app.include_router(editing.routes(url))
    app.include_router(
        tiles.routes(url, tiles.make_cache(settings.redis_url, settings.tile_cache_mb))
    )
    city = City(url)
    app.include_router(styles.routes(url))
    app.include_router(search.routes(url))
    app.include_router(routing.routes(city))
    app.include_router(onemap.routes(city))
    app.include_router(utilities.routes(city))
    app.include_router(incidents.routes(city))
    app.include_router(rasters.routes(city))
    app.include_router(signals.routes(city))
    app.include_router(scenarios.routes(city))
    app.include_router(preplans.routes(city))
    feeds = [Depends(security.requires("observations"))]  # the live feeds: general, audited
    app.include_router(
        sensorthings.routes(
            url,
            live_service.feed,
            mqtt_url=settings.mqtt_url,
            topic_prefix=settings.live_topic_prefix,
        ),
        dependencies=feeds,
    )
    app.include_router(live.routes(live_service, url), dependencies=feeds)
    app.include_router(viewer.routes(settings))
    app.include_router(admin.routes(settings))
    app.include_router(docs.routes(app.title))
    app.state.conformance = conformance()
    docs.install(app)

    @app.get("/health", summary="Whether the API and its database answer")
    def health() -> dict[str, str]:
        if not ping(url):
            raise errors.StoreUnavailableError("the database does not answer")
        return {"status": "ok"}

    @app.get("/layers", summary="Every layer with its attributes and feature count")
    def list_layers(
        at: str | None = Query(None, description="ISO 8601 moment: count the features then"),
    ) -> list[dict[str, Any]]:
        counts = _counts(url, at)  # the layers the caller may read
        return [_describe(LAYERS[layer_id], count) for layer_id, count in counts.items()]

    @app.get("/layers/{layer_id}", summary="One layer with its attributes and feature count")
    def get_layer(layer_id: str) -> dict[str, Any]:
        if layer_id not in LAYERS:
            raise errors.NotFoundError(
                f"unknown layer {layer_id!r}; known layers: {', '.join(LAYERS)}",
                parameter="layer_id",
            )
        access.require(layer_id)
        return _describe(LAYERS[layer_id], _counts(url, None)[layer_id])

    if settings.cors_origins:  # outermost (added last): preflights and problems get it too
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=list(CORS_METHODS),
            allow_headers=list(CORS_HEADERS),
            expose_headers=list(CORS_EXPOSED),
            max_age=600,
        )
    return app


def conformance() -> list[str]:
    """Return every conformance class the API declares: the union of its routers' lists.

    Returns
    -------
    list of str
        Conformance class URIs, each once, in the order the modules declare them.
    """
    declared: list[str] = [*features.CONFORMANCE]
    for module in (tiles, styles):
        declared += getattr(module, "CONFORMANCE", [])
    return list(dict.fromkeys(declared))


def _counts(url: str, at: str | None) -> dict[str, int]:
    try:
        return layer_counts(at=at, url=url)
    except ValueError as exc:
        raise errors.ProblemError(f"at: {exc}", parameter="at") from exc
