"""Utility network endpoints: topology, break isolation, outages and the grid's cascade.

Networks are ``water``, ``gas``, ``sewer``, ``heat`` and ``power``. A break (pipe) or fault
(power line) is given as a point or a line id; an outage as the valves closed or switches
opened (``operate``) and the elements out of service (``out``). Answers list the devices to
operate with their positions, the pieces isolated and without supply (GeoJSON), the nodes,
hydrants and buildings that lose supply, and for the grid what goes dark in turn.

``POST /utilities/section`` (the line as GeoJSON) and ``GET /utilities/section?line=lon,lat;
lon,lat`` draw the pipeline section (profile) along a line drawn on the map
(:func:`layers.section.section`): the ground from the DEM by distance along the line, and every
pipe and buried cable the caller may read that crosses it, at its depth.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import shapely
from fastapi import APIRouter, Path, Query
from pydantic import AfterValidator, BaseModel, Field

from api.errors import NotFoundError, ProblemError
from api.geojson import feature_collection, geometry, records
from api.onemap import Moment, check_moment, parse_geometry
from api.routing import parse_points
from layers.section import MAX_SAMPLES, MAX_SECTION_LENGTH_M, Section, section
from routing.traces import Cascade, Outage
from routing.utility_network import NETWORKS, UtilityNetwork
from twin.city import City

Network = Annotated[str, Path(description=f"One of {', '.join(NETWORKS)}")]
Interpolation = Literal["bilinear", "nearest"]
INTERPOLATION = "Ground between the four nearest cell centres, or the cell under the point"
STEP = (
    f"Distance between ground samples, m (at most {MAX_SAMPLES} samples); half the DEM's cell, "
    "or less on a short line, by default"
)


class BreakRequest(BaseModel):
    """Where a pipe broke or a line faulted: a point or a line id."""

    point: tuple[float, float] | None = Field(default=None, description="lon, lat")
    line: str | None = None
    inoperable: list[str] = Field(default_factory=list, description="Devices that will not move")


class OutageRequest(BaseModel):
    """Devices operated and elements out of service."""

    operate: list[str] = Field(default_factory=list, max_length=1000)
    out: list[str] = Field(default_factory=list, max_length=1000)
    cascade: bool = Field(default=True, description="For the grid: follow what goes dark")


class SectionRequest(BaseModel):
    """A section line (GeoJSON LineString, EPSG:4326) and how to sample the ground along it."""

    geometry: dict[str, Any] = Field(
        description=f"The section line: a GeoJSON LineString in lon/lat, at most "
        f"{MAX_SECTION_LENGTH_M:,.0f} m long"
    )
    step_m: float | None = Field(default=None, gt=0, allow_inf_nan=False, description=STEP)
    dem: str | None = Field(
        default=None, max_length=63, description="The DEM raster; `dem` by default"
    )
    interpolation: Interpolation = Field(default="bilinear", description=INTERPOLATION)
    datetime: Annotated[str | None, AfterValidator(check_moment)] = Field(
        default=None, description="RFC 3339 moment: the pipes and the DEM as they were then"
    )


def _devices(net: UtilityNetwork, ids: list[str]) -> list[dict[str, Any]]:
    nodes = net.nodes[net.nodes["id"].isin(ids)].to_crs("EPSG:4326").set_index("id")
    return [
        {
            "id": i,
            "kind": nodes.at[i, "kind"],
            "lon": round(nodes.at[i, "geometry"].x, 7),
            "lat": round(nodes.at[i, "geometry"].y, 7),
        }
        for i in ids
    ]


def outage_json(result: Outage, net: UtilityNetwork, *, limit: int = 5000) -> dict[str, Any]:
    """Encode an outage: summary, cause, devices with positions, pieces, nodes, buildings."""
    return {
        "network": result.network,
        "cause": result.cause,
        "summary": result.summary(),
        "operate": _devices(net, result.operate),
        "unable": _devices(net, result.unable),
        "isolated": feature_collection(result.isolated, limit=limit),
        "lost": feature_collection(result.lost, limit=limit),
        "nodes": records(result.nodes),
        "hydrants": result.hydrants,
        "buildings": records(result.buildings),
    }


def cascade_json(result: Cascade) -> dict[str, Any]:
    """Encode what a grid outage darkens and the water its pumps stop."""
    return {
        "summary": result.summary(),
        "dark": records(result.dark),
        "water": {name: o.summary() for name, o in result.water.items()},
    }


def section_json(result: Section) -> dict[str, Any]:
    """Encode a section: length, the ground by distance, the crossings, the CRS of distances.

    Parameters
    ----------
    result
        The section (:func:`layers.section.section`).

    Returns
    -------
    dict
        ``length_m``, ``step_m``, ``crs_used``, ``dem``, ``interpolation``, ``layers`` (those
        the crossings were drawn from), ``line`` (GeoJSON), ``ground`` (``distance_m``,
        ``elevation_m``, ``lon``, ``lat``) and ``crossings`` (``id``, ``layer``, ``network``,
        ``kind``, ``status``, ``diameter_mm``, ``depth_m``, ``ground_m``, ``elevation_m``,
        ``invert_m``, ``distance_m``, ``end_distance_m``, ``lon``, ``lat``); metres to the
        millimetre, lon/lat to 7 decimals (1 cm), unknown values null.
    """
    metres = ["distance_m", "end_distance_m", "elevation_m", "ground_m", "depth_m", "invert_m"]
    ground = result.ground.round({"distance_m": 3, "elevation_m": 3, "lon": 7, "lat": 7})
    crossings = result.crossings.round({**dict.fromkeys(metres, 3), "lon": 7, "lat": 7})
    return {
        "length_m": round(result.length_m, 3),
        "step_m": round(result.step_m, 3),
        "crs_used": result.crs_used,
        "dem": result.dem,
        "interpolation": result.interpolation,
        "layers": list(result.layers),
        "line": geometry(result.line),
        "ground": records(ground),
        "crossings": records(crossings),
    }


def routes(city: City) -> APIRouter:
    """Build the utility endpoints over a city.

    Parameters
    ----------
    city
        The city whose networks are traced.

    Returns
    -------
    fastapi.APIRouter
        The endpoints, under ``/utilities``.
    """
    router = APIRouter(prefix="/utilities", tags=["utilities"])

    section_summary = "The pipeline section along a line: ground, and the pipes crossing it"

    # declared before /{network_name}, which would take "section" for a network's name
    @router.get("/section", summary=section_summary)
    def get_section(
        line: Annotated[
            str,
            Query(
                max_length=100_000,
                description=f"The section line as lon,lat;lon,lat (EPSG:4326), at most "
                f"{MAX_SECTION_LENGTH_M:,.0f} m long",
            ),
        ],
        step_m: Annotated[float | None, Query(gt=0, allow_inf_nan=False, description=STEP)] = None,
        dem: Annotated[
            str | None, Query(max_length=63, description="The DEM raster; `dem` by default")
        ] = None,
        interpolation: Annotated[Interpolation, Query(description=INTERPOLATION)] = "bilinear",
        at: Moment = None,
    ) -> dict[str, Any]:
        """Draw the section along a line given as points: as ``POST /utilities/section``."""
        points = parse_points(line, "line")
        if len(points) < 2:
            raise ProblemError("line: give at least two points, lon,lat;lon,lat", parameter="line")
        result = section(
            shapely.LineString(points),
            url=city.url,
            at=at,
            step_m=step_m,
            dem=dem,
            interpolation=interpolation,
            parameter="line",
        )
        return section_json(result)

    @router.post("/section", summary=section_summary)
    def post_section(request: SectionRequest) -> dict[str, Any]:
        """Draw the section (profile) along a line, as a utility GIS's section view.

        The ground is the DEM sampled along the line (distances in metres, measured in the
        city's metric CRS, ``crs_used``), at each step and at each crossing; each pipe (water,
        gas, sewer, heat) and buried power cable crossing the line comes at its distance along
        it, with its depth below ground and its elevation (ground there − depth). Only layers
        the caller may read give crossings (``layers`` lists them). A geometry that is not a
        LineString, a line longer than 5 km or off the DEM, or a step giving more than 1,000
        samples is a 400; no DEM loaded is a 409.
        """
        line = parse_geometry(request.geometry)
        result = section(
            line,
            url=city.url,
            at=request.datetime,
            step_m=request.step_m,
            dem=request.dem,
            interpolation=request.interpolation,
        )
        return section_json(result)

    def network(name: str) -> UtilityNetwork:
        if name not in NETWORKS:
            raise NotFoundError(
                f"no network {name!r}; networks: {', '.join(NETWORKS)}", parameter="network"
            )
        return city.utilities.network(name)  # refused if the caller may not read it

    @router.get("/{network_name}", summary="A network's topology: size, segments, problems")
    def get_network(network_name: Network) -> dict[str, Any]:
        net = network(network_name)
        problems = net.problems
        return {
            "network": net.name,
            "vertices": net.n_vertices,
            "pieces": net.n_edges,
            "lines": len(net.lines),
            "nodes": len(net.nodes),
            "segments": net.n_segments,
            "devices": int(net.device.sum()),
            "sources": int(net.source.sum()),
            "buildings_served": int(
                ((net.buildings["vertex"] >= 0) | (net.buildings["edge"] >= 0)).sum()
            ),
            "problems": {str(k): int(v) for k, v in problems["kind"].value_counts().items()},
            "problem_list": records(problems.head(200)),
        }

    @router.post("/{network_name}/isolate", summary="Isolate a break: devices, losses")
    def post_isolate(network_name: Network, request: BreakRequest) -> dict[str, Any]:
        net = network(network_name)
        result = city.isolate(
            request.point, network=network_name, line=request.line, inoperable=request.inoperable
        )
        body = outage_json(result, net)
        if network_name == "power":
            body["cascade"] = cascade_json(city.utilities.cascade(result))
        return body

    @router.post("/{network_name}/outage", summary="What an operation or a failure cuts off")
    def post_outage(network_name: Network, request: OutageRequest) -> dict[str, Any]:
        net = network(network_name)
        result = city.outage(network_name, operate=request.operate, out=request.out)
        body = outage_json(result, net)
        if network_name == "power" and request.cascade:
            body["cascade"] = cascade_json(city.utilities.cascade(result))
        return body

    return router
