"""The routing engine the twin runs: networks per profile, kept in step with the store.

A :class:`Router` builds each profile's network once and rebuilds it when the roads, live
speeds or speed tables change (their counters in ``layer_versions``). Before every query it
reads the closures active at that moment (the ``closures`` layer, so a closure takes effect
for the next query) and adds any flood it was given. Queries get a network with those edges
closed that nobody changes afterwards, so they run side by side without a lock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from layers.queries import layer_versions
from routing.closures import closed_by_layer, flooded_edges
from routing.network import RoadNetwork, check_profile

_TABLES = ("roads", "live_speeds", "routing_speeds", "routing_profiles")


class Router:
    """Networks per profile for one store, with closures applied per query.

    Parameters
    ----------
    url
        Database URL; the configured one by default.
    """

    def __init__(self, url: str | None = None):
        self.url = url
        self._base: dict[str, tuple[tuple[Any, ...], RoadNetwork]] = {}
        self._views: dict[str, tuple[tuple[Any, ...], frozenset[int], RoadNetwork]] = {}
        self._flooded: set[str] = set()
        self._lock = threading.Lock()

    def _stamp(self) -> tuple[int, ...]:
        return layer_versions(_TABLES, url=self.url)

    def network(self, profile: str = "car", *, at: datetime | None = None) -> RoadNetwork:
        """Return the network of a profile with the closures active ``at`` (now) applied.

        The network returned is never changed afterwards: keep it for a batch of queries.

        Parameters
        ----------
        profile
            ``car`` or ``emergency``.
        at
            Moment for the closures' time windows; now by default.

        Returns
        -------
        RoadNetwork
            The network, closed edges removed.
        """
        check_profile(profile)
        stamp = self._stamp()
        closed_ids = closed_by_layer(at=at, url=self.url)
        with self._lock:
            base = self._base.get(profile)
            if base is None or base[0] != stamp:
                base = (stamp, RoadNetwork.load(profile=profile, url=self.url))
                self._base[profile] = base
            network = base[1]
            closed = frozenset(
                {network.edge_index[e] for e in closed_ids if e in network.edge_index}
                | {network.road_index[r] for r in self._flooded if r in network.road_index}
            )
            view = self._views.get(profile)
            if view is None or view[0] != stamp or view[1] != closed:
                view = (
                    stamp,
                    closed,
                    network.with_closed(np.array(sorted(closed), dtype=np.int64)),
                )
                self._views[profile] = view
            return view[2]

    def run(
        self, profile: str, query: Callable[[RoadNetwork], Any], *, at: datetime | None = None
    ) -> Any:
        """Run ``query(network)`` on a profile's network with its closures applied.

        Parameters
        ----------
        profile
            ``car`` or ``emergency``.
        query
            What to compute.
        at
            Moment for the closures; now by default.

        Returns
        -------
        Any
            What ``query`` returns.
        """
        return query(self.network(profile, at=at))

    def flood(self, raster: str | Path | bytes, *, threshold_m: float = 0.3) -> list[str]:
        """Close the roads under more than ``threshold_m`` of water, replacing an earlier flood.

        Parameters
        ----------
        raster
            GeoTIFF of water depth (m): a path or the file's bytes.
        threshold_m
            Depth above which a road is impassable.

        Returns
        -------
        list of str
            Ids of the roads the flood closes (kept by id, so they stay closed when the
            network is rebuilt).
        """
        network = self.network("car")
        edges = flooded_edges(network, raster, threshold_m=threshold_m)
        roads = sorted({str(network.road_id[e]) for e in edges})
        with self._lock:
            self._flooded = set(roads)
        return roads

    def clear_flood(self) -> None:
        """Reopen the roads a flood closed."""
        with self._lock:
            self._flooded = set()
