"""The routing engine the twin runs: networks per profile, kept in step with the store.

A :class:`Router` builds each profile's network once and rebuilds it when the roads or the
speed tables change (their counters in ``layer_versions``). Live speeds change every few
seconds, so they do not rebuild it: when the ``live_speeds`` counter moves, or a live speed it
applied reaches its expiry, the router reads the live speeds that count now (one small query)
and gives the network those costs (:meth:`RoadNetwork.with_live_speeds`, the view's formula
on arrays, then a recompiled graph). The closures active at a query's moment (the ``closures``
layer) are read again whenever the closures or roads counters move or a closure's time window
opens or shuts (so a closure takes effect for the next query), and any flood it was given is
added. Queries get a network with those costs and closed edges that nobody
changes afterwards, so they run side by side without a lock.

In a what-if scenario (:mod:`layers.overlay`, put in force by :func:`layers.scenarios.using`)
the closures are the scenario's; a scenario that edits roads has its own network, built from
its roads by the view's formula and kept per revision (:data:`SCENARIOS_KEPT` of them), and
its flood setting closes the roads under its raster's water. The base's networks are never
touched by a scenario.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from layers import overlay, rasters
from layers.catalog import LAYERS
from layers.database import owner_cursor
from layers.queries import layer_versions
from routing.closures import closed_by_layer, flooded_edges, next_change
from routing.network import RoadNetwork, check_profile

#: What the networks' structure and free-flow costs depend on: a change rebuilds them.
_STRUCTURE = ("roads", "routing_speeds", "routing_profiles")
#: What their live costs depend on: a change reads the live speeds again.
_LIVE = "live_speeds"
#: What the closed edges depend on (with the structure): a change reads the closures again.
_CLOSURES = "closures"
_TABLES = (*_STRUCTURE, _CLOSURES, _LIVE)

# the live speeds that count now, as routing_edges_all counts them, with the store's clock
_LIVE_SPEEDS = """
SELECT road_id, speed_kmh, expires_at, now() FROM live_speeds
WHERE expires_at IS NULL OR expires_at > now()
"""


@dataclass(frozen=True)
class LiveSpeeds:
    """The live speeds a router's networks carry.

    Attributes
    ----------
    counter
        The ``live_speeds`` counter they were read at.
    generation
        Increases with every read (networks are keyed on it).
    speeds
        Live speed (km/h) by road id.
    refresh_at
        ``time.monotonic()`` at which the first of them expires (inf if none does).
    """

    counter: int
    generation: int
    speeds: dict[str, float] = field(default_factory=dict)
    refresh_at: float = float("inf")


def read_live_speeds(*, url: str | None = None) -> tuple[dict[str, float], float]:
    """Return the live speeds that count now, and in how many seconds the first one expires.

    Parameters
    ----------
    url
        Database URL; the configured one by default.

    Returns
    -------
    tuple
        Speed (km/h) by road id, and seconds until the earliest ``expires_at`` by the store's
        clock (inf when none expires).
    """
    with owner_cursor(url) as cur:  # shared by every caller: read as the owner
        cur.execute(_LIVE_SPEEDS)
        rows = cur.fetchall()
    speeds = {str(road): float(speed) for road, speed, _, _ in rows}
    left = [(expires - now).total_seconds() for _, _, expires, now in rows if expires is not None]
    return speeds, min(left, default=float("inf"))


#: Scenario networks (and views, floods) a router keeps; the oldest made goes first.
SCENARIOS_KEPT = 8


def _keep(cache: dict[Any, Any], key: Any, value: Any) -> None:
    """Store a value, dropping the oldest entries beyond the base's and SCENARIOS_KEPT."""
    cache.pop(key, None)
    cache[key] = value
    while len(cache) > 2 + SCENARIOS_KEPT:
        del cache[next(iter(cache))]


class Router:
    """Networks per profile for one store, with closures applied per query.

    Parameters
    ----------
    url
        Database URL; the configured one by default.
    """

    def __init__(self, url: str | None = None):
        self.url = url
        # by (profile, scenario signature or "" for the base)
        self._base: dict[tuple[str, str], tuple[tuple[Any, ...], RoadNetwork]] = {}
        self._views: dict[tuple[str, str], tuple[tuple[Any, ...], frozenset[int], RoadNetwork]] = {}
        self._floods: dict[tuple[str, tuple[int, ...]], frozenset[str]] = {}
        self._closures: dict[tuple[Any, ...], tuple[frozenset[int], datetime | None]] = {}
        self._live: LiveSpeeds | None = None
        self._flooded: set[str] = set()
        self._lock = threading.Lock()

    def _stamp(self) -> tuple[int, ...]:
        return layer_versions(_TABLES, url=self.url)

    def _live_speeds(self, counter: int) -> LiveSpeeds:
        """Return the live speeds now, read again when the counter moved or one expired."""
        live = self._live
        if live is None or live.counter != counter or time.monotonic() >= live.refresh_at:
            started = time.monotonic()
            speeds, left_s = read_live_speeds(url=self.url)
            generation = 0 if live is None else live.generation + 1
            live = LiveSpeeds(counter, generation, speeds, started + left_s)
            self._live = live
        return live

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
        structure, counter = stamp[: len(_STRUCTURE)], stamp[-1]
        scenario = overlay.active()
        # the scenario's own network when it edits roads or is built on a past moment (the
        # roads of then), else the base's; its flood on top
        past = scenario is not None and scenario.moment is not None
        own = (
            scenario.signature if scenario is not None and (scenario.edits("roads") or past) else ""
        )
        flood = scenario.settings.get("flood") if scenario is not None else None
        closed_ids = self._closed_ids(profile, at, stamp[: len(_STRUCTURE) + 1])
        with self._lock:
            network = self._structure(profile, structure, own)
        # the router's own flood (Router.flood) is today's: not a past moment's
        flooded: frozenset[str] | set[str] = frozenset() if past else self._flooded
        if flood and scenario is not None:
            flooded = flooded | self._scenario_flood(network, scenario, structure, flood)
        with self._lock:
            live = self._live_speeds(counter)
            if past:  # live speeds are now's; a past moment is routed at free flow
                live = LiveSpeeds(live.counter, -1)
            closed = frozenset(
                {network.edge_index[e] for e in closed_ids if e in network.edge_index}
                | {network.road_index[r] for r in flooded if r in network.road_index}
            )
            key = (structure, live.generation)
            slot = (profile, own)
            view = self._views.get(slot)
            if view is None or view[0] != key or view[1] != closed:
                view = (
                    key,
                    closed,
                    network.with_live_speeds(
                        live.speeds, closed=np.array(sorted(closed), dtype=np.int64)
                    ),
                )
                _keep(self._views, slot, view)
            return view[2]

    def _closed_ids(
        self, profile: str, at: datetime | None, versions: tuple[int, ...]
    ) -> frozenset[int]:
        """Return the edges the closures close, read again only when they may have changed.

        Kept per (profile, scenario and revision, roads and closures counters, moment) until
        the next time a closure's window opens or shuts (:func:`routing.closures.next_change`):
        in a scenario the closures are joined to its union of roads, which no index serves
        (bench/scenarios.py: 65-250 ms a route on the sample city, 1.2 s on Malta).
        """
        scenario = overlay.active()
        fixed = at is not None or (scenario is not None and scenario.moment is not None)
        key = (profile, overlay.signature(), versions, at)
        now = datetime.now(UTC)
        with self._lock:
            kept = self._closures.get(key)
        if kept is not None and (kept[1] is None or now < kept[1]):
            return kept[0]
        ids = frozenset(closed_by_layer(at=at if fixed else now, url=self.url, profile=profile))
        until = None if fixed else next_change(now, url=self.url)
        with self._lock:
            _keep(self._closures, key, (ids, until))
        return ids

    def _structure(self, profile: str, structure: tuple[int, ...], own: str) -> RoadNetwork:
        """Return a profile's network (a scenario's when ``own`` names one), built when stale."""
        built = self._base.get((profile, own))
        if built is None or built[0] != structure:
            scenario = overlay.active()
            roads = overlay.relation(LAYERS["roads"]) if own else None
            moment = scenario.moment if own and scenario is not None else None
            built = (
                structure,
                RoadNetwork.load(profile=profile, url=self.url, roads=roads, at=moment),
            )
            _keep(self._base, (profile, own), built)
        return built[1]

    def _scenario_flood(
        self,
        network: RoadNetwork,
        scenario: overlay.Overlay,
        structure: tuple[int, ...],
        flood: dict[str, Any],
    ) -> frozenset[str]:
        """Return the roads a scenario's flood setting closes (computed once per revision)."""
        key = (scenario.signature, structure)
        known = self._floods.get(key)
        if known is None:
            raster = rasters.flood_raster(str(flood["raster"]), url=self.url)
            edges = flooded_edges(network, raster, threshold_m=float(flood["threshold_m"]))
            known = frozenset(str(network.road_id[e]) for e in edges)
            with self._lock:
                _keep(self._floods, key, known)
        return known

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
