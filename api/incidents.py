"""Incident impact: one call reads an incident's consequences from every layer."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api.geojson import feature_collection, geometry
from api.onemap import parse_geometry
from api.routing import unit_features
from api.utilities import cascade_json, outage_json
from twin.city import City
from twin.incidents import KINDS


class IncidentRequest(BaseModel):
    """An incident: where (a GeoJSON point or polygon) and what."""

    geometry: dict[str, Any]
    kind: str = Field(description=f"One of {', '.join(KINDS)}, or any other kind")
    radius_m: float | None = Field(default=None, gt=0, le=5000)
    units: int = Field(default=3, ge=0, le=20)
    limit: int = Field(default=200, ge=0, le=10_000, description="Features per layer")


def routes(city: City) -> APIRouter:
    """Build the incident endpoints over a city.

    Parameters
    ----------
    city
        The city.

    Returns
    -------
    fastapi.APIRouter
        ``/incidents/impact``.
    """
    router = APIRouter(prefix="/incidents", tags=["incidents"])

    @router.post("/impact", summary="Assets hit, utility isolation, units and closures")
    def post_impact(request: IncidentRequest) -> dict[str, Any]:
        where = parse_geometry(request.geometry)
        result = city.incident_impact(
            where, kind=request.kind, radius_m=request.radius_m, units=request.units
        )
        body: dict[str, Any] = {
            "summary": result.summary(),
            "assets": {
                layer: feature_collection(frame, limit=request.limit)
                for layer, frame in result.assets.features.items()
            },
            "units": {"type": "FeatureCollection", "features": unit_features(result.units)},
            "closures": {
                "road_ids": result.closures["road_ids"],
                "geometry": geometry(result.closures["geometry"]),
            },
            "utility": None,
            "cascade": None,
        }
        if result.utility is not None:
            net = city.utilities.network(result.utility.network)
            body["utility"] = outage_json(result.utility, net, limit=request.limit)
        if result.cascade is not None:
            body["cascade"] = cascade_json(result.cascade)
        return body

    return router
