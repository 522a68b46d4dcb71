"""Network analysis over the layers.

The road graph, routes, nearest units, service areas, coverage and OD matrices, with closures
and floods; costs as in the ``routing_edges`` view, so pgRouting checks every answer.
"""

from routing.closures import closed_by_layer, flooded_edges
from routing.coverage import Coverage, coverage, suggest_sites
from routing.isochrones import ServiceArea, service_areas
from routing.network import PROFILES, RoadNetwork, RoutingError, Snap
from routing.paths import Route, Step, Unit, nearest_units, od_matrix, route
from routing.router import Router

__all__ = [
    "PROFILES",
    "Coverage",
    "RoadNetwork",
    "Route",
    "Router",
    "RoutingError",
    "ServiceArea",
    "Snap",
    "Step",
    "Unit",
    "closed_by_layer",
    "coverage",
    "flooded_edges",
    "nearest_units",
    "od_matrix",
    "route",
    "service_areas",
    "suggest_sites",
]
