"""Routing endpoints: routes, nearest units, service areas, coverage, matrices, closures, floods.

Points are written ``lon,lat``; several are separated by ``;``. A destination that cannot be
reached is a normal answer (``"reachable": false``), not an error; a bad parameter is a 400
problem+json naming it.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any

import shapely
from fastapi import APIRouter, Body, Query, Request
from pydantic import BaseModel, Field

from api.errors import ProblemError
from api.features import GeoJSONResponse
from layers import access
from layers.onemap import check_vertices
from layers.validation import IngestError
from routing import PROFILES, Route, Unit
from routing.paths import Point
from twin.city import City

Profile = Annotated[str, Query(description=f"Routing profile: {', '.join(PROFILES)}.")]


def parse_points(text: str, parameter: str) -> list[Point]:
    """Parse ``lon,lat;lon,lat`` into points.

    Parameters
    ----------
    text
        The parameter's value.
    parameter
        Its name, for errors.

    Returns
    -------
    list of tuple of float
        The points.

    Raises
    ------
    ProblemError
        If the value is not a list of ``lon,lat`` pairs.
    """
    points = []
    for part in text.split(";"):
        try:
            lon, lat = (float(v) for v in part.split(","))
        except ValueError:
            raise ProblemError(
                f"{parameter}: expected lon,lat, got {part!r}", parameter=parameter
            ) from None
        if not (math.isfinite(lon) and math.isfinite(lat)):
            raise ProblemError(f"{parameter}: coordinates must be finite", parameter=parameter)
        points.append((lon, lat))
    return points


def _feature(trip: Route | None, **properties: Any) -> dict[str, Any]:
    if trip is None:
        return {
            "type": "Feature",
            "geometry": None,
            "properties": {"reachable": False, "reason": "no route", **properties},
        }
    feature = trip.to_geojson()
    feature["properties"] = {"reachable": True, **properties, **feature["properties"]}
    return feature


def unit_features(units: list[Unit]) -> list[dict[str, Any]]:
    """Encode units fastest first: each its route as a GeoJSON feature with its times."""
    return [
        _feature(
            u.route,
            rank=i + 1,
            unit=u.id,
            kind=u.kind,
            name=u.name,
            travel_s=round(u.travel_s, 3),
            turnout_s=u.turnout_s,
            total_s=round(u.total_s, 3),
        )
        for i, u in enumerate(units)
    ]


class MatrixRequest(BaseModel):
    """Origins and destinations of a travel-time matrix."""

    origins: list[tuple[float, float]] = Field(min_length=1, max_length=1000)
    destinations: list[tuple[float, float]] = Field(min_length=1, max_length=1000)
    profile: str = "car"


class ClosureRequest(BaseModel):
    """A road closure: an area, line or point (GeoJSON geometry), or road ids."""

    geometry: dict[str, Any] | None = None
    road_ids: list[str] = Field(default_factory=list)
    kind: str = "works"
    starts_at: datetime | None = None
    ends_at: datetime | None = None


def routes(city: City) -> APIRouter:
    """Build the routing endpoints over a city.

    Parameters
    ----------
    city
        The city whose roads are routed on.

    Returns
    -------
    fastapi.APIRouter
        The endpoints, under ``/routing``.
    """
    router = APIRouter(prefix="/routing", tags=["routing"])

    @router.get(
        "/route",
        summary="Fastest route between two points",
        response_class=GeoJSONResponse,
    )
    def get_route(
        origin: Annotated[str, Query(alias="from", description="lon,lat")],
        destination: Annotated[str, Query(alias="to", description="lon,lat")],
        profile: Profile = "car",
    ) -> dict[str, Any]:
        start = parse_points(origin, "from")[0]
        end = parse_points(destination, "to")[0]
        return _feature(city.route(start, end, profile=profile), profile=profile)

    @router.get(
        "/nearest",
        summary="The units that reach an incident first, with routes",
        response_class=GeoJSONResponse,
    )
    def get_nearest(
        incident: Annotated[str, Query(description="lon,lat")],
        kind: Annotated[str | None, Query(description="Resource kind; all when absent")] = None,
        k: Annotated[int, Query(description="How many units")] = 3,
        profile: Profile = "emergency",
    ) -> dict[str, Any]:
        point = parse_points(incident, "incident")[0]
        units = city.nearest_units(point, kind=kind, k=k, profile=profile)
        return {"type": "FeatureCollection", "features": unit_features(units)}

    @router.get(
        "/isochrones",
        summary="Service areas of facilities for several time breaks",
        response_class=GeoJSONResponse,
    )
    def get_isochrones(
        facilities: Annotated[str, Query(description="lon,lat;lon,lat ...")],
        breaks: Annotated[str, Query(description="Minutes, comma-separated")] = "4,8,12",
        profile: Profile = "emergency",
    ) -> dict[str, Any]:
        points = parse_points(facilities, "facilities")
        try:
            minutes = [float(b) for b in breaks.split(",")]
        except ValueError:
            raise ProblemError(
                f"breaks: expected minutes such as 4,8,12, got {breaks!r}", parameter="breaks"
            ) from None
        areas = city.service_areas(points, breaks=minutes, profile=profile)
        return {
            "type": "FeatureCollection",
            "features": [
                {
                    "type": "Feature",
                    "geometry": shapely.geometry.mapping(row.geometry),
                    "properties": {
                        "minutes": row.minutes,
                        "reached_length_m": round(row.reached_length_m, 1),
                    },
                }
                for row in areas.itertuples()
            ],
        }

    @router.get("/coverage", summary="Share of buildings and people within T minutes")
    def get_coverage(
        kind: str = "fire_station",
        minutes: float = 8,
        suggest: Annotated[int, Query(ge=0, le=10, description="New sites to suggest")] = 0,
        profile: Profile = "emergency",
    ) -> dict[str, Any]:
        result, sites = city.coverage(kind=kind, minutes=minutes, suggest=suggest, profile=profile)
        return {
            "kind": kind,
            "minutes": minutes,
            "total": result.total,
            "districts": result.districts.to_dict(orient="records"),
            "suggested_sites": sites,
            # what the shares count (population, or buildings where no population is loaded)
            # and what the answer lacks, in words
            "weight": result.weight,
            "notes": list(result.notes),
        }

    @router.post("/matrix", summary="Travel times between two sets of points")
    def post_matrix(request: MatrixRequest) -> dict[str, Any]:
        times = city.od_matrix(request.origins, request.destinations, profile=request.profile)
        values = [
            [None if not math.isfinite(v) else round(float(v), 3) for v in row]
            for row in times.to_numpy()
        ]
        return {"profile": request.profile, "durations_s": values}

    @router.post("/closures", status_code=201, summary="Close roads (area, line, point or ids)")
    def post_closure(request: ClosureRequest) -> dict[str, Any]:
        access.require("closures", "edit")
        geometry = None
        if request.geometry is not None:
            try:
                geometry = shapely.geometry.shape(request.geometry)
            except (
                KeyError,
                TypeError,
                ValueError,
                AttributeError,
                IndexError,
                shapely.errors.ShapelyError,
            ) as exc:
                raise ProblemError(
                    f"geometry: not a GeoJSON geometry ({exc})", parameter="geometry"
                ) from None
            check_vertices(geometry, "geometry")
        try:
            closure = city.close_roads(
                geometry=geometry,
                road_ids=request.road_ids,
                kind=request.kind,
                starts_at=request.starts_at,
                ends_at=request.ends_at,
            )
        except IngestError as exc:
            problem = exc.problems[0]
            raise ProblemError(
                f"{problem.field}: {problem.reason}", parameter=problem.field
            ) from None
        access.note("closures", count=1, ids=[closure])
        return {"id": closure}

    @router.post("/flood", summary="Close the roads a flood raster (GeoTIFF) puts under water")
    async def post_flood(
        request: Request,
        threshold_m: Annotated[float, Query(ge=0, description="Depth that closes a road")] = 0.3,
        raster: Annotated[bytes | None, Body(media_type="image/tiff")] = None,
    ) -> dict[str, Any]:
        access.require("closures", "edit")  # a flood closes roads, as a closure does
        data = await request.body()
        if not data:
            raise ProblemError("send the GeoTIFF as the request body", parameter="raster")
        closed = city.router.flood(data, threshold_m=threshold_m)
        access.note("closures", count=len(closed), ids=closed)  # the closed roads' ids
        return {"threshold_m": threshold_m, "closed_road_ids": closed}

    @router.delete("/flood", status_code=204, summary="Reopen the roads a flood closed")
    def delete_flood() -> None:
        access.require("closures", "edit")
        city.router.clear_flood()
        access.note("closures", count=0)

    return router
