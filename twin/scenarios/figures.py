"""The figures of a scenario, and two scenarios' figures side by side.

The figures are the key performance indicators a commander and a planner compare between the
twin as it is (the base) and a what-if scenario (:mod:`layers.scenarios`):

reach
    Buildings and people within 4, 8 and 12 minutes' drive of a fire station or a hospital, per
    district and for the city: :func:`routing.coverage.coverage`, as :meth:`twin.City.coverage`
    runs it (the ``emergency`` profile, travel time without turnout, the available resources
    of the kind where they are now, buildings reached at their nearest road, districts of the
    finest level), on the network the router gives in the scenario.
response
    Mean and 95th-percentile response time (s) to every building from its nearest station of a
    kind: turnout (:data:`routing.paths.TURNOUT_S`, as :func:`routing.nearest_units` adds it)
    plus the travel time coverage measures. Buildings no station reaches within
    :data:`routing.coverage.MAX_MINUTES` (or standing too far from any open road) are counted
    apart, never averaged as infinity.
roads
    Roads open in the base and closed (or gone) in the scenario, their count and length, and for
    each the detour: the fastest path between its two end nodes in the scenario against the road
    itself (extra metres and seconds; a road whose ends no longer join is counted apart).
utilities
    Buildings and people out of each utility (water, power and any other network with lines
    and a source): those supplied in the base that the scenario's network no longer supplies
    (pipes retired, a valve changed ...) plus those the isolation of each broken asset of the
    scenario's ``settings["broken"]`` cuts off (:meth:`routing.traces.Utilities.isolate` for a
    broken line, :meth:`~routing.traces.Utilities.outage` for a node; a power outage is followed
    through its cascade to the water its pumps lift); the valves and switches to operate; and
    hydrants out of service (in service and supplied in the base, and retired, out of service,
    cut off or broken in the scenario).

Every figure is computed by the twin's own code inside :func:`layers.scenarios.using`, so it is
what the twin answers in that scenario. SUMO's time loss of a scenario's signal plan
(``settings["signal_plan"]``) is asked for apart (``signals=True``: SUMO runs on the scenario's
exported network with a random demand, see :mod:`twin.scenarios.signal_figures`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import numpy as np
import pandas as pd
from psycopg import sql

from layers import access, scenarios
from layers.catalog import LAYERS
from layers.database import cursor
from layers.errors import AccessError, ParameterError
from layers.queries import read_layer
from routing.coverage import MAX_MINUTES, OUTSIDE, coverage
from routing.network import RoadNetwork, RoutingError, check_profile
from routing.paths import TURNOUT_S
from routing.traces import Outage, Utilities
from routing.utility_network import (
    NETWORKS,
    OUT_OF_SERVICE,
    MissingNetworkError,
    TopologyError,
    UtilityNetwork,
)

if TYPE_CHECKING:
    from twin.city import City

#: The resource kinds figures may be asked for (the ``resources`` layer's kinds).
KINDS: tuple[str, ...] = tuple(
    next(f.choices for f in LAYERS["resources"].fields if f.name == "kind") or ()
)
#: The layers the utility networks are drawn from (:mod:`routing.traces`).
_UTILITY_LAYERS = ("pipelines", "pipe_nodes", "power_lines", "power_nodes", "buildings")
#: Units of the figures that count things (written as integers in JSON).
COUNT_UNITS = frozenset({"building", "person", "road", "hydrant", "device", "trip"})

_KIND_LABELS = {
    "fire_station": ("消防站", "fire station"),
    "hospital": ("医院", "hospital"),
    "police": ("派出所", "police station"),
    "shelter": ("避难场所", "shelter"),
    "depot": ("物资储备库", "depot"),
    "vehicle": ("应急车辆", "vehicle"),
}
_NETWORK_LABELS = {  # (out of it, zh; out of it, en; the network, zh)
    "water": ("停水", "out of water", "供水"),
    "gas": ("停气", "out of gas", "燃气"),
    "heat": ("停热", "out of heat", "供热"),
    "sewer": ("排水中断", "without sewerage", "排水"),
    "power": ("停电", "out of power", "供电"),
}


@dataclass(frozen=True)
class Figure:
    """One figure of a scenario.

    Attributes
    ----------
    key
        Stable key, e.g. ``reach.fire_station.8.people`` (see :func:`figures`).
    district
        The district's name; None for the whole city.
    value
        The value; None when it cannot be had (a mean of no building, a share of no one).
    unit
        ``building``, ``person``, ``%``, ``s``, ``road``, ``km``, ``m``, ``hydrant``,
        ``device`` or ``trip``.
    label_zh, label_en
        What it is, in Chinese (shown first) and English.
    """

    key: str
    district: str | None
    value: float | None
    unit: str
    label_zh: str
    label_en: str

    def to_json(self) -> dict[str, Any]:
        """Return the figure as JSON: ``key``, ``district``, ``value``, ``unit``, ``label``."""
        return {
            "key": self.key,
            "district": self.district,
            "value": _json_number(self.value, self.unit),
            "unit": self.unit,
            "label": {"zh": self.label_zh, "en": self.label_en},
        }


@dataclass(frozen=True)
class Figures:
    """The figures of the base or of one scenario.

    Attributes
    ----------
    scenario
        The scenario's name; None for the base.
    revision
        The scenario's revision the figures were computed at (None for the base).
    profile
        The routing profile of reach, response times and detours.
    minutes
        The time limits of reach.
    kinds
        The resource kinds.
    districts
        The districts, by name (the finest level; ``(outside the districts)`` when buildings
        stand outside every district).
    rows
        The figures: per key, the city's (district None) first, then each district's.
    notes
        What is missing or was left out, and why.
    """

    scenario: str | None
    revision: int | None
    profile: str
    minutes: tuple[float, ...]
    kinds: tuple[str, ...]
    districts: tuple[str, ...]
    rows: tuple[Figure, ...]
    notes: tuple[str, ...] = ()

    def value(self, key: str, district: str | None = None) -> float | None:
        """Return one figure's value.

        Parameters
        ----------
        key
            The figure's key.
        district
            A district's name; None for the city.

        Returns
        -------
        float or None
            The value.

        Raises
        ------
        KeyError
            If there is no such figure.
        """
        for row in self.rows:
            if row.key == key and row.district == district:
                return row.value
        raise KeyError((key, district))

    def to_json(self) -> dict[str, Any]:
        """Return the figures as JSON (no NaN or infinity: a missing value is null).

        Returns
        -------
        dict
            ``scenario`` (null for the base), ``revision``, ``profile``, ``minutes``,
            ``kinds``, ``districts``, ``figures`` (list of :meth:`Figure.to_json`) and
            ``notes``.
        """
        return {
            "scenario": self.scenario,
            "revision": self.revision,
            "profile": self.profile,
            "minutes": _json_minutes(self.minutes),
            "kinds": list(self.kinds),
            "districts": list(self.districts),
            "figures": [row.to_json() for row in self.rows],
            "notes": list(self.notes),
        }

    def to_frame(self) -> pd.DataFrame:
        """Return the figures as a table.

        Returns
        -------
        pandas.DataFrame
            ``key``, ``district`` (None for the city), ``value`` (float, NaN when missing),
            ``unit``, ``label_zh``, ``label_en``; one row per figure.
        """
        return pd.DataFrame(
            {
                "key": [r.key for r in self.rows],
                "district": pd.Series([r.district for r in self.rows], dtype=object),
                "value": pd.Series(
                    [np.nan if r.value is None else float(r.value) for r in self.rows],
                    dtype=float,
                ),
                "unit": [r.unit for r in self.rows],
                "label_zh": [r.label_zh for r in self.rows],
                "label_en": [r.label_en for r in self.rows],
            }
        )


@dataclass(frozen=True)
class Comparison:
    """Two scenarios' figures side by side, their differences and the features that differ.

    Attributes
    ----------
    a, b
        The figures of each (either may be the base's).
    difference
        ``b - a`` per ``(key, district)``; None where either value is missing.
    features
        Per layer id, the features that differ from ``a`` to ``b``: ``added`` (in ``b``,
        not in ``a``), ``changed`` and ``retired`` (in ``a``, not in ``b``), each a sorted list
        of feature ids. Layers with no difference are left out.
    settings
        Per settings key (``flood``, ``broken``, ``signal_plan`` ...) that differs:
        ``{"a": value, "b": value}`` (None where unset).
    """

    a: Figures
    b: Figures
    difference: dict[tuple[str, str | None], float | None]
    features: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)

    def _rows(self) -> list[tuple[Figure, float | None, float | None, float | None]]:
        """Each figure once (``a``'s order, then what only ``b`` has), with a, b, b - a."""
        by_a = {(r.key, r.district): r for r in self.a.rows}
        by_b = {(r.key, r.district): r for r in self.b.rows}
        keys = list(by_a) + [k for k in by_b if k not in by_a]
        out = []
        for k in keys:
            ra, rb = by_a.get(k), by_b.get(k)
            shown = ra if ra is not None else rb
            assert shown is not None
            out.append(
                (
                    shown,
                    None if ra is None else ra.value,
                    None if rb is None else rb.value,
                    self.difference.get(k),
                )
            )
        return out

    def to_json(self) -> dict[str, Any]:
        """Return the comparison as JSON (no NaN or infinity: a missing value is null).

        Returns
        -------
        dict
            ``a`` and ``b`` (``scenario``, ``revision``, ``notes`` of each), ``profile``,
            ``minutes``, ``kinds``, ``figures`` (``key``, ``district``, ``unit``, ``label``,
            ``a``, ``b``, ``difference``), ``features`` and ``settings``.
        """
        figures = []
        for row, va, vb, diff in self._rows():
            figures.append(
                {
                    "key": row.key,
                    "district": row.district,
                    "unit": row.unit,
                    "label": {"zh": row.label_zh, "en": row.label_en},
                    "a": _json_number(va, row.unit),
                    "b": _json_number(vb, row.unit),
                    "difference": _json_number(diff, row.unit),
                }
            )
        return {
            "a": _side(self.a),
            "b": _side(self.b),
            "profile": self.a.profile,
            "minutes": _json_minutes(self.a.minutes),
            "kinds": list(self.a.kinds),
            "figures": figures,
            "features": self.features,
            "settings": self.settings,
        }

    def to_frame(self) -> pd.DataFrame:
        """Return the figures side by side as a table.

        Returns
        -------
        pandas.DataFrame
            ``key``, ``district``, ``unit``, ``label_zh``, ``label_en``, ``a``, ``b``,
            ``difference`` (floats, NaN when missing).
        """
        rows = self._rows()

        def numbers(values: list[float | None]) -> pd.Series:
            return pd.Series([np.nan if v is None else float(v) for v in values], dtype=float)

        return pd.DataFrame(
            {
                "key": [r.key for r, *_ in rows],
                "district": pd.Series([r.district for r, *_ in rows], dtype=object),
                "unit": [r.unit for r, *_ in rows],
                "label_zh": [r.label_zh for r, *_ in rows],
                "label_en": [r.label_en for r, *_ in rows],
                "a": numbers([va for _, va, _, _ in rows]),
                "b": numbers([vb for _, _, vb, _ in rows]),
                "difference": numbers([d for *_, d in rows]),
            }
        )


# -- the public calls -------------------------------------------------------------------------


def figures(
    city: City,
    *,
    scenario: str | None = None,
    minutes: Sequence[float] = (4, 8, 12),
    kinds: Sequence[str] = ("fire_station", "hospital"),
    profile: str = "emergency",
    signals: bool = False,
) -> Figures:
    """Compute the figures of the base or of a scenario, as the twin answers in it.

    Parameters
    ----------
    city
        The city (:func:`twin.connect`); signed in, the figures are computed under its grant.
    scenario
        A stored scenario's name, or ``"base"`` for the base twin; None: the scenario the
        city is bound to (``city.scenarios[name]``), the base for ``twin.connect()``'s.
    minutes
        Time limits of reach, minutes (more than 0, at most
        :data:`routing.coverage.MAX_MINUTES`); 4, 8 and 12 by default (common response-time
        standards for urban fire cover).
    kinds
        Resource kinds to reach from (kinds of the ``resources`` layer).
    profile
        Routing profile, ``emergency`` by default (as :meth:`twin.City.coverage`).
    signals
        Also SUMO's time loss of the scenario's signal plan
        (:func:`twin.scenarios.signal_figures.signal_rows`: the scenario's network exported,
        randomTrips' demand of 900 s at 1800 vehicles per hour with seed 42, two SUMO runs;
        some 13 s on the Monaco sample). A scenario (or the base) naming no plan gets a note
        and no ``signals`` rows.

    Returns
    -------
    Figures
        Keys (``{m}`` is a minute limit, ``{kind}`` a kind, ``{net}`` a network; per district
        and city-wide unless said):

        - ``buildings``, ``people``: buildings and residents.
        - ``reach.{kind}.{m}.buildings`` / ``.people`` / ``.building_share`` /
          ``.people_share`` (%; None with no population).
        - ``response.{kind}.mean_s`` / ``.p95_s`` (turnout + travel, s; numpy's linear
          percentile) / ``.unreachable_buildings`` / ``.unreachable_people``.
        - city-wide: ``roads.closed.count``, ``roads.closed.km``,
          ``roads.detour.extra_m.sum`` / ``.mean``, ``roads.detour.extra_s.sum`` / ``.mean``,
          ``roads.detour.unreachable``.
        - ``utilities.{net}.buildings_out`` / ``.people_out``; city-wide
          ``utilities.{net}.devices_to_operate`` and ``utilities.hydrants_out``.
        - with ``signals``, city-wide: ``signals.time_loss_s`` (mean time loss per trip
          under the plan, s), ``signals.trips`` and ``signals.base_time_loss_s`` (under the
          network's own programs, s).

    Raises
    ------
    ScenarioNotFoundError
        If no scenario has that name (parameter ``scenario``).
    ParameterError
        If ``scenario`` is not a name, ``minutes`` are empty, not numbers or out of range,
        ``kinds`` are empty or not resource kinds, ``signals`` is not a boolean (each naming
        its parameter), or with ``signals`` the scenario's ``settings.signal_plan`` names no
        stored plan; a :class:`RoutingError` for an unknown ``profile`` or no roads loaded.
    SignalError
        With ``signals``, if the network cannot be exported, the demand not drawn or SUMO
        fails.
    MissingInputError
        If no building is loaded (coverage counts buildings).
    """
    limits = _check_minutes(minutes)
    chosen = _check_kinds(kinds)
    check_profile(profile)
    if not isinstance(signals, bool):
        raise ParameterError("signals: expected true or false", parameter="signals")
    name = _check_scenario(scenario if scenario is not None else getattr(city, "scenario", None))
    with _session(city):
        if not signals:
            return _figures(city, name, limits, chosen, profile)
        from twin.scenarios import signal_figures  # SUMO's side, loaded when asked for

        if name is not None:  # a plan named wrong is refused before anything is computed
            signal_figures.plan_name(scenarios.get(name, url=city.url).settings, url=city.url)
        found = _figures(city, name, limits, chosen, profile)
        rows, notes = signal_figures.signal_rows(city, name)
    return dataclasses.replace(
        found,
        rows=found.rows + tuple(rows),
        notes=tuple(dict.fromkeys([*found.notes, *notes])),
    )


def compare(
    city: City,
    a: str | None,
    b: str | None,
    *,
    minutes: Sequence[float] = (4, 8, 12),
    kinds: Sequence[str] = ("fire_station", "hospital"),
    profile: str = "emergency",
) -> Comparison:
    """Compare two scenarios' figures (either may be the base), and the features that differ.

    Parameters
    ----------
    city
        The city.
    a, b
        Scenario names; None (or ``"base"``) for the base twin.
    minutes, kinds, profile
        As :func:`figures`.

    Returns
    -------
    Comparison
        Both figures, ``difference = b - a`` per key and district, the features that differ
        per layer (from the two scenarios' current edits) and the settings that differ.

    Raises
    ------
    ScenarioNotFoundError
        If ``a`` or ``b`` names no scenario.
    ParameterError
        As :func:`figures` (parameter ``a`` or ``b`` for a name that is not a string).
    """
    name_a = _check_scenario(a, parameter="a")
    name_b = _check_scenario(b, parameter="b")
    limits = _check_minutes(minutes)
    chosen = _check_kinds(kinds)
    check_profile(profile)
    with _session(city):
        found_a = None if name_a is None else scenarios.get(name_a, url=city.url)
        found_b = None if name_b is None else scenarios.get(name_b, url=city.url)
        fig_a = _figures(city, name_a, limits, chosen, profile)
        fig_b = _figures(city, name_b, limits, chosen, profile)
        features = _feature_changes(city.url, found_a, found_b)
    by_a = {(r.key, r.district): r.value for r in fig_a.rows}
    by_b = {(r.key, r.district): r.value for r in fig_b.rows}
    difference: dict[tuple[str, str | None], float | None] = {}
    for k in list(by_a) + [k for k in by_b if k not in by_a]:
        va, vb = by_a.get(k), by_b.get(k)
        difference[k] = None if va is None or vb is None else vb - va
    settings_a = {} if found_a is None else scenarios.visible_settings(found_a.settings)
    settings_b = {} if found_b is None else scenarios.visible_settings(found_b.settings)
    settings = {
        key: {"a": settings_a.get(key), "b": settings_b.get(key)}
        for key in sorted(set(settings_a) | set(settings_b))
        if settings_a.get(key) != settings_b.get(key)
    }
    return Comparison(fig_a, fig_b, difference, features, settings)


# -- checks -----------------------------------------------------------------------------------


def _check_scenario(scenario: Any, *, parameter: str = "scenario") -> str | None:
    """Return a scenario's name, or None for the base; refuse what is not a name."""
    if scenario is None or scenario == "base":
        return None
    if not isinstance(scenario, str):
        raise ParameterError(
            f"{parameter}: expected a scenario's name (or None for the base), not "
            f"{type(scenario).__name__}",
            parameter=parameter,
        )
    return scenario


def _check_minutes(minutes: Any) -> tuple[float, ...]:
    """Return the time limits, sorted and unique; refuse what is not 0 < m <= MAX_MINUTES."""
    if isinstance(minutes, int | float) and not isinstance(minutes, bool):
        minutes = (minutes,)
    if isinstance(minutes, str) or not isinstance(minutes, Sequence) or not minutes:
        raise ParameterError(
            "minutes: expected one or more time limits in minutes", parameter="minutes"
        )
    out = []
    for m in minutes:
        if isinstance(m, bool) or not isinstance(m, int | float) or not math.isfinite(m):
            raise ParameterError(f"minutes: {m!r} is not a number", parameter="minutes")
        if not 0 < m <= MAX_MINUTES:
            raise ParameterError(
                f"minutes: {m!r} is out of range: more than 0 and at most {MAX_MINUTES}",
                parameter="minutes",
            )
        out.append(float(m))
    return tuple(sorted(set(out)))


def _check_kinds(kinds: Any) -> tuple[str, ...]:
    """Return the resource kinds, unique in the order given; refuse unknown ones."""
    if isinstance(kinds, str):
        kinds = (kinds,)
    if not isinstance(kinds, Sequence) or not kinds:
        raise ParameterError("kinds: expected one or more resource kinds", parameter="kinds")
    out: list[str] = []
    for kind in kinds:
        if kind not in KINDS:
            raise ParameterError(
                f"kinds: {kind!r} is not a resource kind; kinds: {', '.join(KINDS)}",
                parameter="kinds",
            )
        if kind not in out:
            out.append(str(kind))
    return tuple(out)


@contextmanager
def _session(city: City) -> Iterator[None]:
    """Run under the city's grant when it is signed in (as its facade methods run)."""
    if city.principal is None:
        yield
        return
    with access.acting_as(city.grant):
        yield


# -- computing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Reads:
    """What one state (the base or a scenario) gives the figures, read once."""

    utilities_of: Utilities
    utilities_shared: bool  # the scenario edits no utility layer: the base's networks serve
    network: RoadNetwork
    buildings: gpd.GeoDataFrame
    district: np.ndarray  # per building: its district's name
    district_shapes: gpd.GeoDataFrame  # the finest level's districts
    districts: tuple[str, ...]
    utilities: dict[str, UtilityNetwork]
    notes: tuple[str, ...]


def _figures(
    city: City, name: str | None, limits: tuple[float, ...], kinds: tuple[str, ...], profile: str
) -> Figures:
    with scenarios.using(None, url=city.url):
        base = _read(city, profile)
    if name is None:
        found, here = None, base
    else:
        with scenarios.using(name, url=city.url) as found:
            here = _read(city, profile, base)
            assert found is not None
            # what the caller may not read (a broken line of a classified layer) is left out
            rows, notes = _compute(
                city, here, base, kinds, limits, scenarios.visible_settings(found.settings)
            )
        return Figures(
            name,
            found.revision,
            profile,
            limits,
            kinds,
            here.districts,
            tuple(rows),
            tuple(dict.fromkeys(notes)),
        )
    with scenarios.using(None, url=city.url):
        rows, notes = _compute(city, here, base, kinds, limits, {})
    return Figures(
        None, None, profile, limits, kinds, here.districts, tuple(rows), tuple(dict.fromkeys(notes))
    )


def _read(city: City, profile: str, base: _Reads | None = None) -> _Reads:
    """Read the network, buildings, districts and utility networks in the state in force.

    A scenario that edits none of the layers the utility networks are drawn from (lines,
    nodes, buildings) has the base's networks (:func:`layers.overlay.relation` reads those
    layers as the base's tables): they are not built again for it.
    """
    network = city.router.network(profile)
    buildings = read_layer("buildings", url=city.url)
    districts = read_layer("districts", url=city.url)
    if len(districts) and districts["level"].notna().any():  # the finest level, as City.coverage
        districts = districts[districts["level"] == districts["level"].max()]
    district = _building_districts(buildings, districts)
    names = sorted(set(districts["name"].dropna().astype(str))) if len(districts) else []
    if (district == OUTSIDE).any():
        names.append(OUTSIDE)
    in_force = scenarios.active()
    shared = (
        base is not None
        and in_force is not None
        and not any(in_force.edits(layer) for layer in _UTILITY_LAYERS)
    )
    if base is not None and shared:
        nets, notes = base.utilities, list(base.notes)
    else:
        nets, notes = _utility_networks(city.utilities, city.url)
    return _Reads(
        city.utilities,
        shared,
        network,
        buildings,
        district,
        districts,
        tuple(names),
        nets,
        tuple(notes),
    )


def _building_districts(buildings: gpd.GeoDataFrame, districts: gpd.GeoDataFrame) -> np.ndarray:
    """Each building's district: the one holding its representative point (as coverage joins)."""
    if buildings.empty:
        return np.array([], dtype=object)
    points = gpd.GeoDataFrame(geometry=buildings.geometry.representative_point(), crs=buildings.crs)
    if districts.empty:
        return np.full(len(buildings), OUTSIDE, dtype=object)
    joined = gpd.sjoin(points, districts[["name", "geometry"]], predicate="within", how="left")
    joined = joined[~joined.index.duplicated(keep="first")]
    return joined["name"].reindex(buildings.index).fillna(OUTSIDE).astype(str).to_numpy(object)


def _compute(
    city: City,
    here: _Reads,
    base: _Reads,
    kinds: tuple[str, ...],
    limits: tuple[float, ...],
    settings: Mapping[str, Any],
) -> tuple[list[Figure], list[str]]:
    """All figures of one state (``here``), against the base where they compare."""
    rows: list[Figure] = []
    notes: list[str] = list(here.notes)
    population = _population(here.buildings)
    districts = here.districts
    masks = {d: here.district == d for d in districts}

    def add(key: str, value: float | None, unit: str, zh: str, en: str, d: str | None) -> None:
        rows.append(Figure(key, d, value, unit, zh, en))

    for d in (None, *districts):
        mask = np.ones(len(population), dtype=bool) if d is None else masks[d]
        add("buildings", int(mask.sum()), "building", "建筑总数", "Buildings", d)
        add("people", float(population[mask].sum()), "person", "人口", "People", d)
    weighed = population.sum() > 0
    for kind in kinds:
        times, kind_notes = _times(city, here, kind)
        notes.extend(kind_notes)
        rows.extend(_reach_rows(kind, limits, times, population, masks, weighed))
        rows.extend(_response_rows(kind, times, population, masks))
    rows.extend(_road_rows(base.network, here.network))
    utility_rows, utility_notes = _utility_rows(here, base, settings, masks)
    rows.extend(utility_rows)
    notes.extend(utility_notes)
    return rows, notes


def _population(buildings: gpd.GeoDataFrame) -> np.ndarray:
    """Residents of each building (0 where missing), as coverage counts them."""
    if "population" not in buildings.columns:
        return np.zeros(len(buildings))
    return pd.to_numeric(buildings["population"], errors="coerce").fillna(0).to_numpy(float)


def _times(city: City, here: _Reads, kind: str) -> tuple[np.ndarray, list[str]]:
    """Seconds of travel from the nearest available resource of a kind to each building.

    :func:`routing.coverage.coverage` at its longest limit, with the facilities and the
    buildings :meth:`twin.City.coverage` gives it; inf where none arrives within it. With no
    facility of the kind (or none near an open road) every building is unreached.
    """
    facilities = [(float(r["lon"]), float(r["lat"])) for r in city._resources(kind)]
    try:
        result = coverage(
            here.network,
            facilities,
            here.buildings,
            here.district_shapes,
            minutes=float(MAX_MINUTES),
        )
    except RoutingError as exc:
        if exc.parameter != "kind":
            raise
        return np.full(len(here.buildings), np.inf), [f"{kind}: {exc}; no building is reached"]
    return np.asarray(result.times_s, dtype=float), []


def _minutes_key(m: float) -> str:
    return str(int(m)) if float(m).is_integer() else f"{m:g}"


def _reach_rows(
    kind: str,
    limits: tuple[float, ...],
    times: np.ndarray,
    population: np.ndarray,
    masks: dict[str, np.ndarray],
    weighed: bool,
) -> list[Figure]:
    zh, en = _KIND_LABELS.get(kind, (kind, kind.replace("_", " ")))
    rows = []
    for m in limits:
        covered = times <= m * 60
        key = f"reach.{kind}.{_minutes_key(m)}"
        mm = _minutes_key(m)
        for d in (None, *masks):
            mask = np.ones(len(times), dtype=bool) if d is None else masks[d]
            n, hit = int(mask.sum()), int((covered & mask).sum())
            people, reached = float(population[mask].sum()), float(population[covered & mask].sum())
            rows += [
                Figure(
                    f"{key}.buildings",
                    d,
                    hit,
                    "building",
                    f"{zh}{mm}分钟可达建筑",
                    f"Buildings within {mm} min of a {en}",
                ),
                Figure(
                    f"{key}.people",
                    d,
                    reached,
                    "person",
                    f"{zh}{mm}分钟可达人口",
                    f"People within {mm} min of a {en}",
                ),
                Figure(
                    f"{key}.building_share",
                    d,
                    100.0 * hit / n if n else None,
                    "%",
                    f"{zh}{mm}分钟建筑覆盖率",
                    f"Share of buildings within {mm} min of a {en}",
                ),
                Figure(
                    f"{key}.people_share",
                    d,
                    100.0 * reached / people if weighed and people > 0 else None,
                    "%",
                    f"{zh}{mm}分钟人口覆盖率",
                    f"Share of people within {mm} min of a {en}",
                ),
            ]
    return rows


def _response_rows(
    kind: str, times: np.ndarray, population: np.ndarray, masks: dict[str, np.ndarray]
) -> list[Figure]:
    zh, en = _KIND_LABELS.get(kind, (kind, kind.replace("_", " ")))
    response = times + TURNOUT_S.get(kind, 0.0)
    reached = np.isfinite(response)
    rows = []
    for d in (None, *masks):
        mask = np.ones(len(times), dtype=bool) if d is None else masks[d]
        values = response[mask & reached]
        mean = float(values.mean()) if len(values) else None
        p95 = float(np.percentile(values, 95)) if len(values) else None
        lost = mask & ~reached
        rows += [
            Figure(
                f"response.{kind}.mean_s",
                d,
                mean,
                "s",
                f"距最近{zh}平均响应时间",
                f"Mean response time from the nearest {en} (turnout + travel)",
            ),
            Figure(
                f"response.{kind}.p95_s",
                d,
                p95,
                "s",
                f"距最近{zh}95%响应时间",
                f"95th-percentile response time from the nearest {en} (turnout + travel)",
            ),
            Figure(
                f"response.{kind}.unreachable_buildings",
                d,
                int(lost.sum()),
                "building",
                f"{zh}{MAX_MINUTES}分钟内无法到达的建筑",
                f"Buildings no {en} reaches within {MAX_MINUTES} min",
            ),
            Figure(
                f"response.{kind}.unreachable_people",
                d,
                float(population[lost].sum()),
                "person",
                f"{zh}{MAX_MINUTES}分钟内无法到达的人口",
                f"People no {en} reaches within {MAX_MINUTES} min",
            ),
        ]
    return rows


# -- roads --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Detour:
    """A road closed in a scenario and the way around it.

    Attributes
    ----------
    road_id
        The road.
    length_m, cost_s
        The road's own length (m) and travel time (s) in the base.
    detour_m, detour_s
        The fastest path between its end nodes in the scenario (m, s); None when they no
        longer join (or a node is gone).
    """

    road_id: str
    length_m: float
    cost_s: float
    detour_m: float | None
    detour_s: float | None


def detours(base: RoadNetwork, scenario: RoadNetwork) -> list[Detour]:
    """Return the roads open in ``base`` and closed or gone in ``scenario``, with their detours.

    Parameters
    ----------
    base
        The base network (a profile's, closures of now applied).
    scenario
        The same profile's network in the scenario.

    Returns
    -------
    list of Detour
        By road id. The detour runs from the road's source node to its target node (its
        digitised direction, the way a one-way road runs), by the fastest path in the scenario
        (:meth:`routing.RoadNetwork.shortest`); its length is the sum of its edges' lengths.
    """
    gone_or_closed = set(scenario.road_id[scenario.closed].astype(str))
    present = set(scenario.road_id.astype(str))
    out = []
    for i in np.flatnonzero(~base.closed):
        road = str(base.road_id[i])
        if road in present and road not in gone_or_closed:
            continue
        u = scenario.node_index.get(int(base.node_ids[base.source[i]]))
        v = scenario.node_index.get(int(base.node_ids[base.target[i]]))
        path = None if u is None or v is None else scenario.shortest([(u, 0.0)], [(v, 0.0)])
        out.append(
            Detour(
                road,
                float(base.length_m[i]),
                float(base.cost[i]),
                None if path is None else float(sum(scenario.length_m[e] for e, _ in path[3])),
                None if path is None else float(path[0]),
            )
        )
    return sorted(out, key=lambda d: d.road_id)


def _road_rows(base: RoadNetwork, here: RoadNetwork) -> list[Figure]:
    closed = [] if here is base else detours(base, here)
    joined = [d for d in closed if d.detour_m is not None and d.detour_s is not None]
    extra_m = [float(d.detour_m) - d.length_m for d in joined if d.detour_m is not None]
    extra_s = [float(d.detour_s) - d.cost_s for d in joined if d.detour_s is not None]
    return [
        Figure("roads.closed.count", None, len(closed), "road", "封闭道路数", "Roads closed"),
        Figure(
            "roads.closed.km",
            None,
            sum(d.length_m for d in closed) / 1000.0,
            "km",
            "封闭道路里程",
            "Length of roads closed",
        ),
        Figure(
            "roads.detour.extra_m.sum",
            None,
            float(sum(extra_m)),
            "m",
            "绕行增加距离（合计）",
            "Detour: extra distance, all closed roads",
        ),
        Figure(
            "roads.detour.extra_m.mean",
            None,
            float(np.mean(extra_m)) if extra_m else None,
            "m",
            "绕行增加距离（平均）",
            "Detour: extra distance per closed road",
        ),
        Figure(
            "roads.detour.extra_s.sum",
            None,
            float(sum(extra_s)),
            "s",
            "绕行增加时间（合计）",
            "Detour: extra time, all closed roads",
        ),
        Figure(
            "roads.detour.extra_s.mean",
            None,
            float(np.mean(extra_s)) if extra_s else None,
            "s",
            "绕行增加时间（平均）",
            "Detour: extra time per closed road",
        ),
        Figure(
            "roads.detour.unreachable",
            None,
            len(closed) - len(joined),
            "road",
            "无法绕行的封闭道路",
            "Closed roads with no way around",
        ),
    ]


# -- utilities ----------------------------------------------------------------------------------


# the networks holding lines, in the state in force (as the caller may read them)
_LOADED_NETWORKS = sql.SQL(
    "SELECT DISTINCT network FROM {pipelines} AS p WHERE valid_to IS NULL "
    "UNION SELECT 'power' FROM (SELECT 1 FROM {power_lines} AS q WHERE valid_to IS NULL LIMIT 1) "
    "AS one"
)


def _utility_networks(
    utilities: Utilities, url: str
) -> tuple[dict[str, UtilityNetwork], list[str]]:
    """Return the traceable networks in the state in force: with lines and a source."""
    try:
        query = _LOADED_NETWORKS.format(
            pipelines=access.relation(LAYERS["pipelines"]),
            power_lines=access.relation(LAYERS["power_lines"]),
        )
        with cursor(url) as cur:
            cur.execute(query)
            loaded = {str(row[0]) for row in cur.fetchall()}
    except AccessError:
        loaded = set(NETWORKS)  # each network says what the caller may not read
    nets: dict[str, UtilityNetwork] = {}
    notes = []
    for name in (n for n in NETWORKS if n in loaded):
        try:
            net = utilities.network(name)
        except MissingNetworkError:
            continue
        except AccessError:
            notes.append(f"utilities: this session may not read the {name} network")
            continue
        if net.n_edges and net.source.any():
            nets[name] = net
    return nets, notes


def _served(net: UtilityNetwork) -> dict[str, float]:
    """Return the buildings supplied in normal operation, with their population."""
    vertex_ok, edge_ok = net.base_supply
    b = net.buildings
    bv, be = b["vertex"].to_numpy(np.int64), b["edge"].to_numpy(np.int64)
    ok = np.where(bv >= 0, vertex_ok[np.maximum(bv, 0)], False) | np.where(
        be >= 0, edge_ok[np.maximum(be, 0)], False
    )
    ids = b["id"].astype(str).to_numpy(object)[ok]
    people = pd.to_numeric(b["population"], errors="coerce").fillna(0).to_numpy(float)[ok]
    return dict(zip(ids, people, strict=True))


def _hydrants_in_service(net: UtilityNetwork) -> set[str]:
    """Hydrants supplied in normal operation and not out of service."""
    vertex_ok, _ = net.base_supply
    nodes = net.nodes[net.nodes["kind"] == "hydrant"]
    vertex = nodes["vertex"].to_numpy(np.int64)
    status = nodes["status"] if "status" in nodes else pd.Series(None, index=nodes.index)
    ok = (
        (vertex >= 0)
        & np.where(vertex >= 0, vertex_ok[np.maximum(vertex, 0)], False)
        & ~status.isin(OUT_OF_SERVICE).to_numpy()
    )
    return set(nodes["id"].astype(str).to_numpy(object)[ok])


def broken_outages(
    utilities: Utilities, nets: Mapping[str, UtilityNetwork], broken: Sequence[Mapping[str, Any]]
) -> tuple[list[Outage], list[str]]:
    """Trace what each broken asset cuts off, in the state in force.

    Parameters
    ----------
    utilities
        The city's utility networks (:attr:`twin.City.utilities`), read in the state in force.
    nets
        The traceable networks in the state in force (by name).
    broken
        ``{"layer", "id"}`` entries (a scenario's ``settings["broken"]``).

    Returns
    -------
    tuple
        The outages (a broken line isolated as :meth:`routing.traces.Utilities.isolate` does;
        a broken node out of service as :meth:`~routing.traces.Utilities.outage`; a power
        outage followed by the water outages of the pumps it darkens,
        :meth:`~routing.traces.Utilities.cascade`), and notes for assets no traceable network
        holds.
    """
    outages: list[Outage] = []
    notes: list[str] = []
    for asset in broken:
        layer, asset_id = str(asset.get("layer")), str(asset.get("id"))
        power = layer.startswith("power")
        names = [n for n in nets if (n == "power") == power]
        if layer in ("pipelines", "power_lines"):
            owner = next((n for n in names if asset_id in nets[n].line_index), None)
        else:
            owner = next((n for n in names if (nets[n].nodes["id"] == asset_id).any()), None)
        if owner is None:
            notes.append(f"broken {layer} {asset_id!r} is on no traceable network: left out")
            continue
        try:
            if layer in ("pipelines", "power_lines"):
                found = utilities.isolate(line=asset_id, network=owner)
            else:
                found = utilities.outage(owner, out=[asset_id])
        except TopologyError as exc:
            notes.append(f"broken {layer} {asset_id!r}: {exc}")
            continue
        outages.append(found)
        if found.network == "power":
            try:
                outages.extend(utilities.cascade(found).water.values())
            except (MissingNetworkError, TopologyError) as exc:
                notes.append(f"broken {layer} {asset_id!r}: its cascade is not traced ({exc})")
    return outages, notes


def _utility_rows(
    here: _Reads, base: _Reads, settings: Mapping[str, Any], masks: dict[str, np.ndarray]
) -> tuple[list[Figure], list[str]]:
    outages: list[Outage] = []
    notes: list[str] = []
    if here is not base and settings.get("broken"):
        with scenarios.using(None) if here.utilities_shared else contextlib.nullcontext():
            outages, notes = broken_outages(here.utilities_of, here.utilities, settings["broken"])
    district_of = dict(zip(base.buildings["id"].astype(str), base.district, strict=True)) | dict(
        zip(here.buildings["id"].astype(str), here.district, strict=True)
    )
    rows: list[Figure] = []
    hydrants_out: set[str] = set()
    for name in dict.fromkeys([*base.utilities, *here.utilities]):
        zh, en, network_zh = _NETWORK_LABELS.get(name, (name, f"out of {name}", name))
        base_net, net = base.utilities.get(name), here.utilities.get(name)
        supplied = _served(base_net) if base_net is not None else {}
        if here is base:
            out: dict[str, float] = {}
        else:
            now = _served(net) if net is not None else {}
            out = {b: p for b, p in supplied.items() if b not in now}
            people = supplied | now
            for found in (o for o in outages if o.network == name):
                for b in found.buildings["id"].astype(str):
                    out[b] = people.get(b, 0.0)
            if base_net is not None:
                ok_now = _hydrants_in_service(net) if net is not None else set()
                ok_now -= {h for o in outages if o.network == name for h in o.hydrants}
                hydrants_out |= _hydrants_in_service(base_net) - ok_now
        devices = sorted({d for o in outages if o.network == name for d in o.operate})
        ids = np.array(list(out), dtype=object)
        people_out = np.array(list(out.values()), dtype=float)
        where = np.array([district_of.get(b, OUTSIDE) for b in ids], dtype=object)
        for d in (None, *masks):
            sel = np.ones(len(ids), dtype=bool) if d is None else where == d
            rows.append(
                Figure(
                    f"utilities.{name}.buildings_out",
                    d,
                    int(sel.sum()),
                    "building",
                    f"{zh}建筑",
                    f"Buildings {en}",
                )
            )
            rows.append(
                Figure(
                    f"utilities.{name}.people_out",
                    d,
                    float(people_out[sel].sum()),
                    "person",
                    f"{zh}人口",
                    f"People {en}",
                )
            )
        rows.append(
            Figure(
                f"utilities.{name}.devices_to_operate",
                None,
                len(devices),
                "device",
                f"{network_zh}需操作的阀门或开关",
                f"Valves or switches to operate ({name})",
            )
        )
    rows.append(
        Figure(
            "utilities.hydrants_out",
            None,
            len(hydrants_out),
            "hydrant",
            "失效消火栓",
            "Hydrants out of service",
        )
    )
    return rows, notes


# -- features that differ -----------------------------------------------------------------------

_EDITS = """
SELECT layer, feature_id, op,
       md5(row::text || COALESCE(encode(ST_AsEWKB(geom), 'hex'), ''))
FROM scenario_edits WHERE scenario_id = %(id)s AND valid_to IS NULL
"""


def _current_edits(
    url: str, found: scenarios.Scenario | None
) -> dict[tuple[str, str], tuple[str, str]]:
    """Return a scenario's current edits: ``(layer, id) -> (op, digest of row and geometry)``."""
    if found is None:
        return {}
    with cursor(url) as cur:
        cur.execute(_EDITS, {"id": found.id})
        return {(str(layer), str(i)): (str(op), str(h)) for layer, i, op, h in cur.fetchall()}


def _feature_changes(
    url: str, a: scenarios.Scenario | None, b: scenarios.Scenario | None
) -> dict[str, dict[str, list[str]]]:
    """Return the features that differ from ``a`` to ``b``, per layer (:class:`Comparison`)."""
    edits_a, edits_b = _current_edits(url, a), _current_edits(url, b)
    out: dict[str, dict[str, list[str]]] = {}
    visible = set(access.visible(list(LAYERS)))
    for key in sorted(set(edits_a) | set(edits_b)):
        ea, eb = edits_a.get(key), edits_b.get(key)
        if ea == eb or key[0] not in visible:
            continue
        in_base = not any(e is not None and e[0] == "add" for e in (ea, eb))
        shown_a = in_base if ea is None else ea[0] != "retire"
        shown_b = in_base if eb is None else eb[0] != "retire"
        if shown_a and shown_b:
            change = "changed"
        elif shown_b:
            change = "added"
        elif shown_a:
            change = "retired"
        else:
            continue
        out.setdefault(key[0], {"added": [], "changed": [], "retired": []})[change].append(key[1])
    return out


# -- JSON ---------------------------------------------------------------------------------------


def _json_number(value: float | None, unit: str) -> float | int | None:
    """Return a value for JSON: None if missing or not finite, an int for a count."""
    if value is None:
        return None
    number = float(value)
    if not math.isfinite(number):
        return None
    if unit in COUNT_UNITS and number.is_integer():
        return int(number)
    return number


def _side(figures: Figures) -> dict[str, Any]:
    return {
        "scenario": figures.scenario,
        "revision": figures.revision,
        "notes": list(figures.notes),
    }


def _json_minutes(minutes: Sequence[float]) -> list[float | int]:
    """Return time limits for JSON: whole minutes as integers."""
    return [int(m) if float(m).is_integer() else float(m) for m in minutes]
