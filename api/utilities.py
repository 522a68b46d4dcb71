"""Utility network endpoints: topology, break isolation, outages and the grid's cascade.

Networks are ``water``, ``gas``, ``sewer``, ``heat`` and ``power``. A break (pipe) or fault
(power line) is given as a point or a line id; an outage as the valves closed or switches
opened (``operate``) and the elements out of service (``out``). Answers list the devices to
operate with their positions, the pieces isolated and without supply (GeoJSON), the nodes,
hydrants and buildings that lose supply, and for the grid what goes dark in turn.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from api.errors import NotFoundError
from api.geojson import feature_collection, records
from routing.traces import Cascade, Outage
from routing.utility_network import NETWORKS, UtilityNetwork
from twin.city import City

Network = Annotated[str, Path(description=f"One of {', '.join(NETWORKS)}")]


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
