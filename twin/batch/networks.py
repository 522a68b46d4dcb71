"""The road network on a batch worker: built from the store once per worker process.

A task never carries the graph. It carries a :class:`NetworkSpec` (the database URL, the
profile, the closed edges and the city settings the client used); the first task on a worker
process builds :class:`routing.RoadNetwork` from the store and keeps it for the tasks after it.
The spec holds the client's city extent and metric CRS, so a worker on another machine, whose
environment may say nothing about the city, snaps and measures exactly as the client would.

Costs are the view's free-flow costs: live speeds, which change by the minute, are not applied
(a city-wide batch is a planning figure, and every worker must see the same costs); the
closures active when the batch starts are.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass

import numpy as np

from layers.settings import get_settings
from routing import RoadNetwork, closed_by_layer

#: Networks one worker process keeps (oldest dropped first).
MAX_CACHED = 4

_networks: dict[NetworkSpec, RoadNetwork] = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class NetworkSpec:
    """What a worker needs to build the same network as the client.

    Attributes
    ----------
    url
        Database URL; every worker must reach it (on a cluster: not ``127.0.0.1``).
    profile
        ``car`` or ``emergency``.
    closed
        Ids (``routing_edges.id``) of the edges closed, sorted: the closures the client read.
    city_bbox
        The city's extent (min lon, min lat, max lon, max lat; EPSG:4326) on the client.
    metric_crs
        The city's metric CRS on the client.
    """

    url: str
    profile: str
    closed: tuple[int, ...]
    city_bbox: tuple[float, float, float, float]
    metric_crs: str


def network_spec(url: str, *, profile: str) -> NetworkSpec:
    """Describe the network a batch runs on: now's closures, this process's city settings.

    Parameters
    ----------
    url
        Database URL (resolved).
    profile
        Routing profile.

    Returns
    -------
    NetworkSpec
        The spec; the closures active now (:func:`routing.closed_by_layer`) are fixed in it, so
        every worker closes the same edges whenever it starts.
    """
    settings = get_settings()
    return NetworkSpec(
        url=url,
        profile=profile,
        closed=tuple(sorted(closed_by_layer(url=url))),
        city_bbox=tuple(float(v) for v in settings.city_bbox),  # type: ignore[arg-type]
        metric_crs=str(settings.metric_crs),
    )


def _adopt_settings(spec: NetworkSpec) -> None:
    """Make this process's city extent and metric CRS those of the spec (a remote worker)."""
    settings = get_settings()
    if (
        tuple(float(v) for v in settings.city_bbox) == spec.city_bbox
        and str(settings.metric_crs) == spec.metric_crs
    ):
        return
    os.environ["TWIN_CITY_BBOX"] = json.dumps(list(spec.city_bbox))
    os.environ["TWIN_METRIC_CRS"] = spec.metric_crs
    get_settings.cache_clear()


def worker_network(spec: NetworkSpec) -> RoadNetwork:
    """Return the network of a spec, built from the store on this process's first call.

    Parameters
    ----------
    spec
        The network wanted.

    Returns
    -------
    routing.RoadNetwork
        The profile's network read with :meth:`routing.RoadNetwork.load`, the spec's edges
        closed. Shared by the tasks of this process: never modify it.

    Raises
    ------
    routing.RoutingError
        If the store has no roads.
    """
    with _lock:
        network = _networks.get(spec)
        if network is not None:
            return network
        _adopt_settings(spec)
        network = RoadNetwork.load(profile=spec.profile, url=spec.url)
        if spec.closed:
            index = [network.edge_index[e] for e in spec.closed if e in network.edge_index]
            network = network.with_closed(np.array(index, dtype=np.int64))
        while len(_networks) >= MAX_CACHED:
            _networks.pop(next(iter(_networks)))
        _networks[spec] = network
        return network
