"""One-map endpoints: around a point, within an area, along a line; districts; cameras.

Every layer answers (or those named in ``layers``), current or as of ``datetime``, filtered
per layer by CQL2 text (``filter=buildings:height_m > 30``, repeatable); each layer's
features come as a FeatureCollection of at most ``limit`` (``numberMatched`` says how many
there were), nearest first, with the summary over all of them.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import shapely
from fastapi import APIRouter, Query, Response
from pydantic import AfterValidator, BaseModel, Field

from api.errors import ProblemError
from api.geojson import feature_collection, records
from layers import access, onemap
from layers.onemap import MAX_RADIUS_M, check_geometry
from layers.queries import as_of
from twin.city import City

Layers = Annotated[
    str | None, Query(description="Comma-separated layer ids; every layer when absent")
]
Filters = Annotated[
    list[str] | None,
    Query(alias="filter", description="layer:CQL2 text, e.g. buildings:height_m > 30"),
]
Limit = Annotated[int, Query(ge=0, le=10_000, description="Features returned per layer")]


def check_moment(value: str | None) -> str | None:
    """Refuse a moment that is not ISO 8601 / RFC 3339 (a 400 naming the parameter, not a 500).

    Parameters
    ----------
    value
        The moment as given, or None (now).

    Returns
    -------
    str or None
        The value, unchanged.

    Raises
    ------
    ValueError
        If it is not an ISO 8601 date or date-time.
    """
    if value is not None:
        try:
            as_of(value)
        except ValueError:
            raise ValueError(
                f"{value[:40]!r} is not an RFC 3339 moment (e.g. 2024-05-01T12:00:00Z)"
            ) from None
    return value


Moment = Annotated[
    str | None,
    Query(alias="datetime", description="RFC 3339 moment"),
    AfterValidator(check_moment),
]


class AreaRequest(BaseModel):
    """An area or a line to ask about, with the same options as ``/onemap/around``."""

    geometry: dict[str, Any]
    buffer_m: float | None = Field(default=None, description="Buffer of a line (m)")
    layers: list[str] | None = None
    filters: dict[str, str] = Field(default_factory=dict)
    datetime: Annotated[str | None, AfterValidator(check_moment)] = None
    limit: int = Field(default=100, ge=0, le=10_000)


def parse_layers(text: str | None) -> list[str] | None:
    """Split a comma-separated ``layers`` parameter (None: every layer)."""
    if text is None:
        return None
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_filters(values: list[str] | None) -> dict[str, str]:
    """Parse repeated ``layer:CQL2`` filter parameters."""
    out: dict[str, str] = {}
    for value in values or []:
        layer, sep, text = value.partition(":")
        if not sep or not layer.strip() or not text.strip():
            raise ProblemError(
                f"filter: expected layer:CQL2 text, got {value!r}", parameter="filter"
            )
        out[layer.strip()] = text.strip()
    return out


def parse_geometry(value: dict[str, Any], parameter: str = "geometry") -> shapely.Geometry:
    """Read a GeoJSON geometry object, or answer 400 naming the parameter."""
    try:
        geometry = shapely.from_geojson(json.dumps(value))
    except (shapely.errors.ShapelyError, TypeError, ValueError) as exc:
        reason = (str(exc).splitlines() or [""])[0]
        if "point array must contain" in reason:  # GEOS on a one-position line or ring
            reason = "a line needs at least two positions, a ring at least four"
        raise ProblemError(
            f"{parameter}: not a GeoJSON geometry: {reason}", parameter=parameter
        ) from None
    check_geometry(geometry, parameter)
    return geometry


def answer(text: bytes) -> Response:
    """Send a one-map answer that PostgreSQL wrote as GeoJSON (no GeoDataFrame on the way).

    Parameters
    ----------
    text
        UTF-8 JSON from :func:`layers.onemap.around_geojson` (or ``within_geojson``,
        ``along_geojson``): the area, the summary and a FeatureCollection per layer.

    Returns
    -------
    fastapi.Response
        ``application/json``.
    """
    return Response(content=text, media_type="application/json")


def routes(city: City) -> APIRouter:
    """Build the one-map, district and camera endpoints over a city.

    Parameters
    ----------
    city
        The city asked.

    Returns
    -------
    fastapi.APIRouter
        ``/onemap/...`` and ``/cameras/coverage``.
    """
    router = APIRouter(tags=["one map"])

    @router.get("/onemap/around", summary="Every layer within a radius of a point")
    def get_around(
        lon: Annotated[float, Query(ge=-180, le=180)],
        lat: Annotated[float, Query(ge=-90, le=90)],
        radius_m: Annotated[float, Query(gt=0, le=MAX_RADIUS_M, description="Radius (m)")],
        layers: Layers = None,
        filters: Filters = None,
        at: Moment = None,
        limit: Limit = 100,
    ) -> Response:
        text = onemap.around_geojson(
            (lon, lat),
            radius_m,
            layers=parse_layers(layers),
            at=at,
            filters=parse_filters(filters),
            url=city.url,
            limit=limit,
        )
        return answer(text)

    @router.post("/onemap/within", summary="Every layer within an area (GeoJSON polygon)")
    def post_within(request: AreaRequest) -> Response:
        area = parse_geometry(request.geometry)
        text = onemap.within_geojson(
            area,
            layers=request.layers,
            at=request.datetime,
            filters=request.filters,
            url=city.url,
            limit=request.limit,
        )
        return answer(text)

    @router.post("/onemap/along", summary="Every layer within a buffer of a line")
    def post_along(request: AreaRequest) -> Response:
        line = parse_geometry(request.geometry)
        if request.buffer_m is None:
            raise ProblemError("buffer_m: give the buffer in metres", parameter="buffer_m")
        text = onemap.along_geojson(
            line,
            request.buffer_m,
            layers=request.layers,
            at=request.datetime,
            filters=request.filters,
            url=city.url,
            limit=request.limit,
        )
        return answer(text)

    @router.get("/onemap/districts", summary="Per district: counts, lengths, population")
    def get_districts(at: Moment = None) -> dict[str, Any]:
        stats = city.district_stats(at=at)
        # why a column is empty (no resources of the kind, no roads), in words
        return {"districts": records(stats), "notes": list(stats.attrs.get("notes", []))}

    @router.get("/cameras/coverage", summary="View cones, road coverage, blind spots")
    def get_camera_coverage(at: Moment = None) -> dict[str, Any]:
        access.require("cameras")  # view cones are drawn from the cameras' positions
        result = city.camera_coverage(at=at)
        return {
            "districts": records(result.districts),
            "cones": feature_collection(result.cones),
            "blind_spots": feature_collection(result.blind_spots),
        }

    return router
