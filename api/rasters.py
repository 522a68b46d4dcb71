"""Raster endpoints: the stored rasters and their statistics per district or area."""

from __future__ import annotations

from typing import Annotated, Any

import geopandas as gpd
from fastapi import APIRouter, Path
from pydantic import BaseModel

from api.geojson import records
from api.onemap import Moment, parse_geometry
from twin.city import City

Name = Annotated[str, Path(description="A stored raster's name")]


class ZoneRequest(BaseModel):
    """A polygon (GeoJSON, EPSG:4326) to summarise a raster over."""

    geometry: dict[str, Any]


def routes(city: City) -> APIRouter:
    """Build the raster endpoints over a city.

    Parameters
    ----------
    city
        The city.

    Returns
    -------
    fastapi.APIRouter
        The endpoints, under ``/rasters``.
    """
    router = APIRouter(prefix="/rasters", tags=["rasters"])

    @router.get("", summary="The stored rasters: name, kind, size, CRS, bounds")
    def get_rasters(at: Moment = None) -> dict[str, Any]:
        table = city.rasters(at=at)
        return {"rasters": records(table.drop(columns=["bounds"], errors="ignore"))}

    @router.get("/{name}/districts", summary="A raster's statistics per district")
    def get_districts(name: Name, at: Moment = None) -> dict[str, Any]:
        return {"raster": name, "districts": records(city.zonal_stats(name, at=at))}

    @router.post("/{name}/zonal", summary="A raster's statistics over a polygon")
    def post_zonal(name: Name, request: ZoneRequest, at: Moment = None) -> dict[str, Any]:
        zone = gpd.GeoDataFrame(
            {"id": ["zone"]}, geometry=[parse_geometry(request.geometry)], crs="EPSG:4326"
        )
        return {"raster": name, "zones": records(city.zonal_stats(name, zone, at=at))}

    return router
