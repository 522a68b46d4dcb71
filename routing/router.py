"""The routing engine the twin runs: networks per profile, kept in step with the store.

A :class:`Router` builds each profile's network once and rebuilds it when the roads or live
speeds change; before every query it applies the closures active at that moment (the
``closures`` layer, re-read each time, so a closure takes effect for the next query) and any
flood raster given to it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from layers.database import get_engine
from routing.closures import closed_by_layer, flooded_edges
from routing.network import RoadNetwork, check_profile

_STAMP = """
SELECT (SELECT max(vid) FROM roads), (SELECT max(valid_to) FROM roads),
       (SELECT max(observed_at) FROM live_speeds), (SELECT count(*) FROM live_speeds)
"""


class Router:
    """Networks per profile for one store, with closures applied per query.

    Parameters
    ----------
    url
        Database URL; the configured one by default.
    """

    def __init__(self, url: str | None = None):
        self.url = url
        self._networks: dict[str, tuple[tuple[Any, ...], RoadNetwork]] = {}
        self._flooded: set[int] = set()
        self._lock = threading.RLock()

    def _stamp(self) -> tuple[Any, ...]:
        with get_engine(self.url).connect() as connection:
            raw = connection.connection.driver_connection
            assert raw is not None
            with raw.cursor() as cur:
                cur.execute(_STAMP)
                row = cur.fetchone()
        return tuple(row or ())

    def _network(self, profile: str) -> RoadNetwork:
        stamp = self._stamp()
        cached = self._networks.get(profile)
        if cached is None or cached[0] != stamp:
            cached = (stamp, RoadNetwork.load(profile=profile, url=self.url))
            self._networks[profile] = cached
        return cached[1]

    @contextmanager
    def network(self, profile: str = "car", *, at: datetime | None = None) -> Iterator[RoadNetwork]:
        """Lend the network of a profile with the closures active ``at`` (now) applied.

        Queries share one network per profile, so the network is lent under a lock.

        Parameters
        ----------
        profile
            ``car`` or ``emergency``.
        at
            Moment for the closures' time windows; now by default.

        Yields
        ------
        RoadNetwork
            The network, closed edges removed.
        """
        check_profile(profile)
        with self._lock:
            network = self._network(profile)
            closed = closed_by_layer(at=at, url=self.url) | self._flooded
            network.close(
                np.array(
                    [network.edge_index[e] for e in closed if e in network.edge_index],
                    dtype=np.int64,
                )
            )
            yield network

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
        with self.network(profile, at=at) as network:
            return query(network)

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
            Road ids now closed by the flood.
        """
        with self._lock:
            network = self._network("car")
            edges = flooded_edges(network, raster, threshold_m=threshold_m)
            self._flooded = {int(network.edge_id[e]) for e in edges}
            return sorted(str(network.road_id[e]) for e in edges)

    def clear_flood(self) -> None:
        """Reopen the roads a flood closed."""
        with self._lock:
            self._flooded = set()
