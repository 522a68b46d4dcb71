"""Incident impact in one call: what is hit, what the utilities lose, who comes, what to close.

An incident is a point or an area and a kind. Its impact is read from every layer at once:

- the assets within the kind's radius (or inside the area): a one-map answer;
- for a kind that breaks a utility (a burst main, a gas leak, a cable fault) the isolation
  on the nearest line of that network: devices to operate, what loses supply, and for the
  grid the cascade (pumps, signals, cameras going dark);
- the units that reach it first by network time (emergency routing);
- the roads to close: those within the kind's closure distance, and the roads over the
  pipes isolated (the works area; a cable fault is repaired where it is found, so its whole
  isolated branch is not closed).

The rules per kind are in :data:`KINDS`; an unknown kind gets the default row. What is read
comes through a :class:`Responder` (a :class:`twin.City` is one), so this module does not
import the facade that calls it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import shapely

from layers import access
from layers.errors import ParameterError
from layers.onemap import OneMap, along, around, check_geometry, within
from routing import Unit
from routing.traces import Cascade, Outage, Utilities
from routing.utility_network import NETWORK_LAYERS


class Responder(Protocol):
    """What an incident's impact is read through: the store, its utilities and its units.

    :class:`twin.City` is one.

    Attributes
    ----------
    url
        Database URL of the store.
    utilities
        The store's utility networks.
    """

    url: str

    @property
    def utilities(self) -> Utilities:
        """The utility networks (water, gas, sewer, heat, power)."""
        ...

    def nearest_units(
        self, incident: tuple[float, float], *, kind: str | None = None, k: int = 3
    ) -> list[Unit]:
        """Return the ``k`` available resources that reach ``(lon, lat)`` first, with routes."""
        ...


@dataclass(frozen=True)
class KindRule:
    """How an incident kind is read.

    Attributes
    ----------
    radius_m
        Radius around a point incident in which assets count as hit.
    close_m
        Roads within this distance of the incident are suggested for closure.
    network
        The utility network the kind breaks, if any.
    units
        Resource kind sent first (None: any kind).
    """

    radius_m: float
    close_m: float
    network: str | None
    units: str | None


#: Rules per incident kind.
KINDS: dict[str, KindRule] = {
    "fire": KindRule(100.0, 50.0, None, "fire_station"),
    "explosion": KindRule(300.0, 150.0, None, "fire_station"),
    "gas_leak": KindRule(200.0, 100.0, "gas", "fire_station"),
    "burst_main": KindRule(50.0, 20.0, "water", None),
    "sewer_collapse": KindRule(50.0, 20.0, "sewer", None),
    "power_fault": KindRule(50.0, 0.0, "power", None),
    "flood": KindRule(200.0, 100.0, None, "fire_station"),
    "collision": KindRule(50.0, 25.0, None, "hospital"),
    "medical": KindRule(30.0, 0.0, None, "hospital"),
    "crime": KindRule(50.0, 0.0, None, "police"),
}
DEFAULT_RULE = KindRule(100.0, 30.0, None, None)
#: Roads this close to an isolated pipe or cable are in its works area (m).
WORKS_M = 5.0


@dataclass(frozen=True)
class Impact:
    """An incident's impact across the layers.

    Attributes
    ----------
    kind
        The incident kind.
    geometry
        The incident (point or area, EPSG:4326).
    rule
        The rule applied.
    assets
        What lies within the radius (or the area), every layer.
    utility
        The isolation, when the kind breaks a network and a line of it is near.
    cascade
        For a grid fault, what goes dark in turn.
    units
        The units that reach it first.
    closures
        Road ids suggested for closure, and their lines (``road_ids``, ``geometry``).
    """

    kind: str
    geometry: shapely.Geometry
    rule: KindRule
    assets: OneMap
    utility: Outage | None
    cascade: Cascade | None
    units: list[Unit]
    closures: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        """Return the figures: assets hit, utility losses, units and closures.

        Returns
        -------
        dict
            ``kind``; ``radius_m`` (m); ``unit_kind``, the resource kind the incident kind
            sends (None: none is assigned, the nearest units of any kind are listed);
            ``assets`` (count per layer); ``buildings``; ``utility`` and ``cascade``
            (their summaries, or None); ``units`` (id, kind, name, ``total_s`` in s);
            ``closures`` (count of roads).
        """
        return {
            "kind": self.kind,
            "radius_m": self.rule.radius_m,
            "unit_kind": self.rule.units,
            "assets": self.assets.summary["counts"],
            "buildings": self.assets.summary.get("buildings"),
            "utility": self.utility.summary() if self.utility else None,
            "cascade": self.cascade.summary() if self.cascade else None,
            "units": [
                {"id": u.id, "kind": u.kind, "name": u.name, "total_s": round(u.total_s, 1)}
                for u in self.units
            ],
            "closures": len(self.closures["road_ids"]),
        }


def impact(
    city: Responder,
    geometry: shapely.Geometry,
    *,
    kind: str,
    radius_m: float | None = None,
    units: int = 3,
) -> Impact:
    """Read an incident's impact from every layer.

    Parameters
    ----------
    city
        The city (a :class:`twin.City`, or anything with what :class:`Responder` names).
    geometry
        The incident: a point or an area (EPSG:4326).
    kind
        ``fire``, ``burst_main``, ``gas_leak``, ``power_fault``, ``collision`` ... (see
        :data:`KINDS`).
    radius_m
        Radius around a point in which assets are hit; the kind's by default.
    units
        How many units to send (0: none).

    Returns
    -------
    Impact
        Assets, utility isolation and cascade, units and suggested closures.

    Raises
    ------
    layers.errors.ParameterError
        If ``geometry`` is not a Point or a Polygon, or ``units`` is not 0 to 20.
    layers.onemap.OneMapError
        If ``geometry`` is empty or not in lon/lat, or ``radius_m`` is out of range.
    routing.RoutingError
        If units are asked for and the incident is outside the city or off the roads.
    """
    rule = KINDS.get(kind, DEFAULT_RULE)
    if radius_m is not None:
        rule = KindRule(radius_m, rule.close_m, rule.network, rule.units)
    if not 0 <= units <= 20:
        raise ParameterError("units must be between 0 and 20", parameter="units")
    check_geometry(geometry)
    if isinstance(geometry, shapely.Point):
        assets = around((geometry.x, geometry.y), rule.radius_m, url=city.url)
        centre = geometry
    elif isinstance(geometry, shapely.Polygon | shapely.MultiPolygon):
        assets = within(geometry, url=city.url)
        centre = geometry.representative_point()
    else:
        raise ParameterError("an incident is a Point or a Polygon", parameter="geometry")
    utility = cascade = None
    # a network the caller may not read is not traced for it (the graph is every caller's)
    if rule.network is not None and access.may_read_rows(
        NETWORK_LAYERS[rule.network], "network", rule.network
    ):
        try:
            utility = city.utilities.isolate((centre.x, centre.y), network=rule.network)
        except ParameterError:
            utility = None  # no line of that network near: nothing to isolate
        if utility is not None and rule.network == "power":
            cascade = city.utilities.cascade(utility)
    sent = city.nearest_units((centre.x, centre.y), kind=rule.units, k=units) if units else []
    closures = _closures(city, geometry, rule, utility)
    return Impact(kind, geometry, rule, assets, utility, cascade, sent, closures)


def _closures(
    city: Responder, geometry: shapely.Geometry, rule: KindRule, utility: Outage | None
) -> dict[str, Any]:
    """Roads within the closure distance, and over the isolated pipes (the works area)."""
    areas = []
    if rule.close_m > 0:
        point = geometry if isinstance(geometry, shapely.Point) else None
        if point is not None:
            areas.append(around((point.x, point.y), rule.close_m, layers=["roads"], url=city.url))
        else:
            areas.append(within(geometry, layers=["roads"], url=city.url))
    if utility is not None and utility.network != "power" and len(utility.isolated):
        works = shapely.union_all(utility.isolated.geometry.to_numpy())
        if not works.is_empty:
            areas.append(_along(city, works))
    roads = [answer.features["roads"] for answer in areas]
    ids = sorted({str(i) for frame in roads for i in frame["id"]})
    lines = [g for frame in roads for g in frame.geometry.to_numpy()]
    merged = shapely.union_all(np.asarray(lines, dtype=object)) if lines else None
    return {"road_ids": ids, "geometry": merged}


def _along(city: Responder, works: shapely.Geometry) -> OneMap:
    parts = shapely.get_parts(shapely.line_merge(works))
    line = parts[0] if len(parts) == 1 else shapely.MultiLineString(list(parts))
    return along(line, WORKS_M, layers=["roads"], url=city.url)
