"""Pre-plans (预案): scenario templates per incident kind, stored, versioned and applied to a place.

A pre-plan says, for one kind of incident, what the city does when it happens:

- the units to send: resource kinds of the ``resources`` layer and how many of each;
- the cordon: a circle of ``cordon_m`` metres around the place, added to the ``closures`` layer
  with ``"emergency_access": true``: every road it touches is closed to ordinary traffic
  (the ``car`` profile, :mod:`routing.closures`), while the emergency units sent through it
  are let in (the ``emergency`` profile routes across it);
- the valves: the nearest line of a utility network (water, gas, sewer, heat, power) is
  isolated by the utility trace (:meth:`routing.traces.Utilities.isolate`): which valves close
  (or switches open), which customers lose supply;
- who to notify (roles and agencies, in English and Chinese);
- a checklist of steps, each with a target time in seconds after the alarm.

Pre-plans live in the store (migration 0018, table ``preplans``): saving a name again closes
its current version and adds a new one (an identical save adds nothing), so a drill is always
reviewed against the version it ran. :func:`seed` loads the built-in templates
(``preplans.json`` beside this module: a dozen incident kinds, with Chinese and English names),
idempotently.

:func:`apply` makes a what-if scenario (:mod:`layers.scenarios`) from a pre-plan at a place:
the incident and the cordon as features of the ``incidents`` and ``closures`` layers in the
scenario, the isolated line in its ``broken`` setting, and in its settings the dispatch (the
nearest units of each kind, computed *in the scenario* with the emergency profile, for which
the cordon is open), the valves, the notify list and the pre-plan's name and version.

Who applies a pre-plan is the signed-in caller when a grant is in force (:func:`actor_name`); a
name given by the caller counts only for the store's owner (the CLI, a notebook) and for an
anonymous caller.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import shapely
import shapely.geometry
from psycopg import sql
from psycopg.types.json import Jsonb
from pyproj import Transformer

from layers import access, scenarios
from layers.catalog import LAYERS
from layers.database import cursor, get_engine
from layers.errors import MissingInputError, ParameterError
from layers.scenarios import Scenario
from layers.settings import get_settings
from routing import RoutingError
from routing.network import MAX_SNAP_M
from routing.traces import isolate, locate
from routing.utility_network import NETWORK_LAYERS, NETWORKS, TopologyError
from twin.places import as_lonlat

if TYPE_CHECKING:
    from twin.city import City

#: The built-in templates (:func:`builtin_preplans`).
TEMPLATES = Path(__file__).with_name("preplans.json")
#: A pre-plan's name and an incident kind: slugs, as scenario names are.
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
#: Largest cordon, m. Emergency units cross the cordon (``emergency_access``), but a vehicle of
#: any other profile routed in the scenario snaps to the nearest *open* road, which routing finds
#: within :data:`routing.network.MAX_SNAP_M` (250 m) of the place; a wider cordon would leave
#: the place with none.
MAX_CORDON_M = MAX_SNAP_M - 50.0
#: The routing profile the dispatch is computed with (the cordon is open to it).
DISPATCH_PROFILE = "emergency"
#: Farthest a pre-plan looks for the line of its network to isolate, m.
MAX_SEARCH_M = 1000.0
#: Most units of one kind a pre-plan sends (as :func:`twin.incidents.impact` caps them).
MAX_UNITS = 20
#: Latest target of a step: a day after the alarm, s.
MAX_TARGET_S = 86_400.0
#: Longest free text kept (titles, descriptions, names of agencies), characters.
MAX_TEXT = 4000
#: Severity of an incident, as the ``incidents`` layer grades it.
SEVERITIES = (1, 5)
#: Author recorded for the built-in templates.
BUILTIN_AUTHOR = "twin"


class PreplanNotFoundError(LookupError):
    """No pre-plan has that name (nor is one written for that incident kind) (HTTP 404).

    Parameters
    ----------
    name
        The name or kind asked for.
    known
        The names the store holds.
    parameter
        The parameter that named it.
    """

    def __init__(self, name: str, known: Sequence[str] = (), *, parameter: str = "preplan"):
        listed = ", ".join(known) if known else "none; load them with `twin preplans seed`"
        super().__init__(
            f"{parameter}: no pre-plan named {name!r} nor for that kind; known: {listed}"
        )
        self.name = name
        self.parameter = parameter


@dataclass(frozen=True)
class UnitRequest:
    """Units of one kind a pre-plan sends.

    Attributes
    ----------
    kind
        A resource kind of the ``resources`` layer (``fire_station``, ``hospital`` ...).
    count
        How many, 1 to :data:`MAX_UNITS`.
    """

    kind: str
    count: int


@dataclass(frozen=True)
class Valves:
    """The utility line a pre-plan isolates: the nearest of a network to the place.

    Attributes
    ----------
    network
        ``water``, ``gas``, ``sewer``, ``heat`` or ``power``.
    search_m
        How far from the place to look for a line, m.
    required
        Whether a place with no line of the network within ``search_m`` is refused (a water
        main burst must be on a main); otherwise the scenario notes it and goes on.
    """

    network: str
    search_m: float
    required: bool


@dataclass(frozen=True)
class Contact:
    """Someone a pre-plan notifies: a role or agency.

    Attributes
    ----------
    id
        A short key (``fire_rescue``); the steps' ``role`` may name it.
    en, zh
        Its name in English and Chinese.
    """

    id: str
    en: str
    zh: str


@dataclass(frozen=True)
class Step:
    """One step of a pre-plan's checklist.

    Attributes
    ----------
    id
        A short key, unique in the pre-plan (``valves_closed``); drills record actions by it.
    en, zh
        What is done, in English and Chinese.
    role
        Who does it.
    target_s
        When it should be done, s after the alarm.
    """

    id: str
    en: str
    zh: str
    role: str
    target_s: float


@dataclass(frozen=True)
class Preplan:
    """A pre-plan: a scenario template for an incident kind.

    Attributes
    ----------
    name
        Its name (a slug).
    kind
        The incident kind it is for (``fire``, ``gas_leak``, ``burst_main`` ...): the
        ``kind`` of the incident it adds.
    title_en, title_zh
        Its title in English and Chinese.
    description
        What it is for.
    severity
        Severity of the incident it adds, 1 to 5.
    units
        The units to send.
    cordon_m
        Radius of the cordon closed around the place, m (0: none).
    closure_kind
        ``kind`` of the cordon's closure (``incident``, ``works``, ``event``, ``flood`` ...).
    valves
        The network whose nearest line is isolated, or None.
    notify
        Who to notify.
    steps
        The checklist, targets in s after the alarm.
    source
        Where the targets come from.
    vid, version, author, builtin, created_at, updated_at
        As stored: the version's row id, its number (1 for the first), who saved it, whether
        it is a built-in template, when the name was first saved and when this version was.
        None (``vid``, ``created_at``, ``updated_at``) and 0 for a template not yet saved.
    """

    name: str
    kind: str
    title_en: str
    title_zh: str
    description: str
    severity: int
    units: tuple[UnitRequest, ...]
    cordon_m: float
    closure_kind: str
    valves: Valves | None
    notify: tuple[Contact, ...]
    steps: tuple[Step, ...]
    source: str = ""
    vid: int | None = None
    version: int = 0
    author: str = ""
    builtin: bool = False
    created_at: datetime | None = None
    updated_at: datetime | None = None

    def step(self, step_id: str) -> Step | None:
        """Return the checklist step with that id, or None."""
        return next((s for s in self.steps if s.id == step_id), None)

    def template(self) -> dict[str, Any]:
        """Return the template as JSON, as :func:`parse` reads it and the store keeps it.

        Returns
        -------
        dict
            ``name``, ``kind``, ``title`` (``en``, ``zh``), ``description``, ``severity``,
            ``units``, ``cordon_m``, ``closure_kind``, ``valves``, ``notify``, ``steps``,
            ``source``.
        """
        return {
            "name": self.name,
            "kind": self.kind,
            "title": {"en": self.title_en, "zh": self.title_zh},
            "description": self.description,
            "severity": self.severity,
            "units": [{"kind": u.kind, "count": u.count} for u in self.units],
            "cordon_m": self.cordon_m,
            "closure_kind": self.closure_kind,
            "valves": None
            if self.valves is None
            else {
                "network": self.valves.network,
                "search_m": self.valves.search_m,
                "required": self.valves.required,
            },
            "notify": [{"id": c.id, "en": c.en, "zh": c.zh} for c in self.notify],
            "steps": [
                {"id": s.id, "en": s.en, "zh": s.zh, "role": s.role, "target_s": s.target_s}
                for s in self.steps
            ],
            "source": self.source,
        }

    def to_json(self) -> dict[str, Any]:
        """Return the template with what the store says of it (RFC 3339 times).

        Returns
        -------
        dict
            :meth:`template`'s members and ``version``, ``author``, ``builtin``,
            ``created_at``, ``updated_at``.
        """
        return self.template() | {
            "version": self.version,
            "author": self.author,
            "builtin": self.builtin,
            "created_at": None if self.created_at is None else self.created_at.isoformat(),
            "updated_at": None if self.updated_at is None else self.updated_at.isoformat(),
        }


@dataclass(frozen=True)
class SeedReport:
    """What :func:`seed` did, per pre-plan name.

    Attributes
    ----------
    added, changed, unchanged
        Names saved for the first time, saved as a new version, and left as they were.
    """

    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


# -- reading a template -------------------------------------------------------------------------


def _resource_kinds() -> tuple[str, ...]:
    spec = next(f for f in LAYERS["resources"].fields if f.name == "kind")
    return tuple(spec.choices or ())


def _slug(value: Any, parameter: str) -> str:
    if not isinstance(value, str) or not NAME.match(value):
        raise ParameterError(
            f"{parameter}: {value!r} is not a name: 1 to 63 lower-case letters, digits, '-' "
            "and '_', starting with a letter or digit",
            parameter=parameter,
        )
    return value


def _text(value: Any, parameter: str, *, required: bool = False) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise ParameterError(
            f"{parameter}: expected {'non-empty ' if required else ''}text", parameter=parameter
        )
    if len(value) > MAX_TEXT or "\x00" in value:
        raise ParameterError(
            f"{parameter}: at most {MAX_TEXT} characters, no NUL", parameter=parameter
        )
    return value


def _number(value: Any, parameter: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ParameterError(f"{parameter}: expected a number", parameter=parameter)
    if not low <= float(value) <= high:
        raise ParameterError(
            f"{parameter}: {value} is outside {low:g} to {high:g}", parameter=parameter
        )
    return float(value)


def _integer(value: Any, parameter: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ParameterError(f"{parameter}: expected an integer", parameter=parameter)
    if not low <= value <= high:
        raise ParameterError(
            f"{parameter}: {value} is outside {low} to {high}", parameter=parameter
        )
    return value


def _list(value: Any, parameter: str) -> list[Any]:
    if not isinstance(value, list):
        raise ParameterError(f"{parameter}: expected a list", parameter=parameter)
    return value


def _object(value: Any, parameter: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ParameterError(f"{parameter}: expected a JSON object", parameter=parameter)
    return value


def parse(data: Any) -> Preplan:
    """Read a pre-plan template (JSON), checking every member.

    Parameters
    ----------
    data
        A JSON object as :meth:`Preplan.template` writes it: ``name`` and ``kind`` (slugs),
        ``title`` (``{"en", "zh"}``, English required), ``description``, ``severity`` (1 to
        5, 3 by default), ``units`` (``[{"kind": resource kind, "count": 1..20}]``, kinds
        unique), ``cordon_m`` (0 to :data:`MAX_CORDON_M`), ``closure_kind`` (``incident`` by
        default), ``valves`` (``{"network", "search_m", "required"}`` or null), ``notify``
        (``[{"id", "en", "zh"}]``), ``steps`` (``[{"id", "en", "zh", "role", "target_s"}]``, at
        least one, ids unique, targets 0 to a day), ``source``.

    Returns
    -------
    Preplan
        The template, not stored (``vid`` None).

    Raises
    ------
    ParameterError
        Naming the member at fault (``units[1].kind``, ``steps[0].target_s`` ...).
    """
    plan = _object(data, "preplan")
    title = _object(plan.get("title") or {}, "title")
    kinds = _resource_kinds()
    units: list[UnitRequest] = []
    for i, unit in enumerate(_list(plan.get("units", []), "units")):
        where = f"units[{i}]"
        unit = _object(unit, where)
        kind = unit.get("kind")
        if kind not in kinds:
            raise ParameterError(
                f"{where}.kind: {kind!r} is not a resource kind: one of {', '.join(kinds)}",
                parameter=f"{where}.kind",
            )
        if any(u.kind == kind for u in units):
            raise ParameterError(f"{where}.kind: {kind} is listed twice", parameter=f"{where}.kind")
        units.append(
            UnitRequest(str(kind), _integer(unit.get("count"), f"{where}.count", 1, MAX_UNITS))
        )
    valves = None
    if plan.get("valves") is not None:
        given = _object(plan["valves"], "valves")
        network = given.get("network")
        if network not in NETWORKS:
            raise ParameterError(
                f"valves.network: {network!r} is not a network: one of {', '.join(NETWORKS)}",
                parameter="valves.network",
            )
        required = given.get("required", False)
        if not isinstance(required, bool):
            raise ParameterError(
                "valves.required: expected true or false", parameter="valves.required"
            )
        valves = Valves(
            str(network),
            _number(given.get("search_m", 100.0), "valves.search_m", 1.0, MAX_SEARCH_M),
            required,
        )
    notify: list[Contact] = []
    for i, contact in enumerate(_list(plan.get("notify", []), "notify")):
        where = f"notify[{i}]"
        contact = _object(contact, where)
        key = _slug(contact.get("id"), f"{where}.id")
        if any(c.id == key for c in notify):
            raise ParameterError(f"{where}.id: {key} is listed twice", parameter=f"{where}.id")
        notify.append(
            Contact(
                key,
                _text(contact.get("en"), f"{where}.en", required=True),
                _text(contact.get("zh"), f"{where}.zh"),
            )
        )
    steps: list[Step] = []
    for i, step in enumerate(_list(plan.get("steps"), "steps")):
        where = f"steps[{i}]"
        step = _object(step, where)
        key = _slug(step.get("id"), f"{where}.id")
        if any(s.id == key for s in steps):
            raise ParameterError(f"{where}.id: {key} is listed twice", parameter=f"{where}.id")
        steps.append(
            Step(
                key,
                _text(step.get("en"), f"{where}.en", required=True),
                _text(step.get("zh"), f"{where}.zh"),
                _text(step.get("role"), f"{where}.role"),
                _number(step.get("target_s"), f"{where}.target_s", 0.0, MAX_TARGET_S),
            )
        )
    if not steps:
        raise ParameterError("steps: a pre-plan needs at least one step", parameter="steps")
    return Preplan(
        name=_slug(plan.get("name"), "name"),
        kind=_slug(plan.get("kind"), "kind"),
        title_en=_text(title.get("en"), "title.en", required=True),
        title_zh=_text(title.get("zh"), "title.zh"),
        description=_text(plan.get("description"), "description"),
        severity=_integer(plan.get("severity", 3), "severity", *SEVERITIES),
        units=tuple(units),
        cordon_m=_number(plan.get("cordon_m", 0.0), "cordon_m", 0.0, MAX_CORDON_M),
        closure_kind=_slug(plan.get("closure_kind", "incident"), "closure_kind"),
        valves=valves,
        notify=tuple(notify),
        steps=tuple(steps),
        source=_text(plan.get("source"), "source"),
    )


@lru_cache(maxsize=1)
def builtin_preplans() -> tuple[Preplan, ...]:
    """Return the built-in templates (``preplans.json``), one per incident kind.

    Returns
    -------
    tuple of Preplan
        Fire, gas leak, water main burst, urban flooding, traffic accident, power outage,
        building collapse, hazardous chemicals, large event, earthquake, bridge or tunnel
        closure, snow and ice; not stored (:func:`seed` stores them).
    """
    data = json.loads(TEMPLATES.read_text(encoding="utf-8"))
    return tuple(parse(plan) for plan in data["preplans"])


# -- the store ----------------------------------------------------------------------------------

# every column a Preplan is read from; ``version`` counts the name's versions up to this one
_SELECT = sql.SQL(
    """
SELECT p.vid, p.plan, p.author, p.builtin, p.valid_from,
       (SELECT count(*) FROM preplans o WHERE o.name = p.name AND o.vid <= p.vid),
       (SELECT min(o.valid_from) FROM preplans o WHERE o.name = p.name)
FROM preplans p WHERE {where}
"""
)


def _stored(row: Sequence[Any]) -> Preplan:
    vid, plan, author, builtin, valid_from, version, created = row
    return replace(
        parse(plan),
        vid=int(vid),
        version=int(version),
        author=str(author),
        builtin=bool(builtin),
        created_at=created,
        updated_at=valid_from,
    )


@contextmanager
def _writing(url: str | None) -> Iterator[Any]:
    """Lend a cursor in one write transaction on the primary, as the store's owner."""
    with get_engine(url).begin() as connection:
        raw = connection.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cur:
            yield cur


def save(
    preplan: Preplan | Mapping[str, Any],
    *,
    author: str = "",
    builtin: bool = False,
    url: str | None = None,
) -> tuple[Preplan, str]:
    """Store a pre-plan: a new version of its name, unless the current one is the same.

    Parameters
    ----------
    preplan
        The pre-plan, or its template as JSON (see :func:`parse`).
    author
        Who saves it.
    builtin
        Whether it is a built-in template.
    url
        Database URL; the configured one by default.

    Returns
    -------
    tuple
        The stored pre-plan, and ``added`` (first version), ``changed`` (a new version) or
        ``unchanged`` (the current version holds the same template; nothing written).

    Raises
    ------
    ParameterError
        For a template :func:`parse` refuses, or a bad ``author``.
    """
    plan = preplan if isinstance(preplan, Preplan) else parse(preplan)
    template = plan.template()
    author = _text(author, "author")
    with _writing(url) as cur:
        cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"twin.preplan.{plan.name}",))
        cur.execute("SELECT plan FROM preplans WHERE name = %s AND valid_to IS NULL", (plan.name,))
        current = cur.fetchone()
        if current is not None and current[0] == template:
            outcome = "unchanged"
        else:
            outcome = "added" if current is None else "changed"
            cur.execute(
                "UPDATE preplans SET valid_to = clock_timestamp() "
                "WHERE name = %s AND valid_to IS NULL",
                (plan.name,),
            )
            cur.execute(
                "INSERT INTO preplans (name, kind, title_en, title_zh, plan, author, builtin) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (
                    plan.name,
                    plan.kind,
                    plan.title_en,
                    plan.title_zh,
                    Jsonb(template),
                    author,
                    builtin,
                ),
            )
    return get(plan.name, url=url), outcome


def seed(*, author: str = BUILTIN_AUTHOR, url: str | None = None) -> SeedReport:
    """Store the built-in templates; a template already stored as it is is left alone.

    Running it twice writes nothing the second time. A built-in whose name the city saved
    with its own content gets the built-in back as a new version (the city's stays readable
    as the earlier one); seed only on a new city, or save the city's own versions after.

    Parameters
    ----------
    author
        Who is recorded as saving them.
    url
        Database URL; the configured one by default.

    Returns
    -------
    SeedReport
        The names added, changed and unchanged.
    """
    report = SeedReport()
    for plan in builtin_preplans():
        _, outcome = save(plan, author=author, builtin=True, url=url)
        getattr(report, outcome).append(plan.name)
    return report


def list_preplans(*, url: str | None = None) -> list[Preplan]:
    """Return the current version of every stored pre-plan, by name.

    Parameters
    ----------
    url
        Database URL; the configured one by default.

    Returns
    -------
    list of Preplan
        The pre-plans.
    """
    with cursor(url) as cur:
        cur.execute(_SELECT.format(where=sql.SQL("p.valid_to IS NULL ORDER BY p.name")))
        return [_stored(row) for row in cur.fetchall()]


def get(name: str, *, parameter: str = "preplan", url: str | None = None) -> Preplan:
    """Return a stored pre-plan's current version, by its name or by its incident kind.

    Parameters
    ----------
    name
        A pre-plan's name (``water_main_burst``) or an incident kind (``burst_main``) that
        exactly one current pre-plan is written for.
    parameter
        The parameter named in an error.
    url
        Database URL; the configured one by default.

    Returns
    -------
    Preplan
        The pre-plan.

    Raises
    ------
    PreplanNotFoundError
        If no pre-plan has that name and none is for that kind (the error lists the names).
    ParameterError
        If several pre-plans are for that kind (naming them: give one's name).
    """
    if not isinstance(name, str):
        raise PreplanNotFoundError(repr(name), parameter=parameter)
    with cursor(url) as cur:
        cur.execute(
            _SELECT.format(
                where=sql.SQL(
                    "p.valid_to IS NULL AND (p.name = %(name)s OR p.kind = %(name)s) "
                    "ORDER BY p.name = %(name)s DESC, p.name"
                )
            ),
            {"name": name},
        )
        rows = cur.fetchall()
        if not rows:
            cur.execute("SELECT name FROM preplans WHERE valid_to IS NULL ORDER BY name")
            known = [str(r[0]) for r in cur.fetchall()]
            raise PreplanNotFoundError(name, known, parameter=parameter)
    found = [_stored(row) for row in rows]
    if found[0].name != name and len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise ParameterError(
            f"{parameter}: several pre-plans are for kind {name!r} ({names}): name one",
            parameter=parameter,
        )
    return found[0]


def get_version(vid: int, *, url: str | None = None) -> Preplan:
    """Return one stored version of a pre-plan, current or not.

    Parameters
    ----------
    vid
        Its row id (``Preplan.vid``).
    url
        Database URL; the configured one by default.

    Returns
    -------
    Preplan
        That version.

    Raises
    ------
    PreplanNotFoundError
        If no version has that id.
    """
    with cursor(url) as cur:
        cur.execute(_SELECT.format(where=sql.SQL("p.vid = %s")), (vid,))
        row = cur.fetchone()
    if row is None:
        raise PreplanNotFoundError(f"version {vid}")
    return _stored(row)


# -- applying a pre-plan ------------------------------------------------------------------------


def check_place(place: Any, parameter: str = "place") -> tuple[float, float]:
    """Return a place as ``(lon, lat)`` if it is a position inside the city's extent.

    Parameters
    ----------
    place
        ``(lon, lat)`` or a shapely Point (EPSG:4326), or a GeoJSON Point object.
    parameter
        The parameter named in an error.

    Returns
    -------
    tuple of float
        ``(lon, lat)``.

    Raises
    ------
    ParameterError
        If it is not a position (see :func:`twin.places.as_lonlat`) or lies outside the
        city's extent (``city_bbox`` of :mod:`layers.settings`).
    """
    if isinstance(place, Mapping):
        if place.get("type") != "Point":
            raise ParameterError(
                f"{parameter}: expected (lon, lat) or a GeoJSON Point", parameter=parameter
            )
        place = place.get("coordinates")
    lon, lat = as_lonlat(place, parameter)
    xmin, ymin, xmax, ymax = get_settings().city_bbox
    if not (xmin <= lon <= xmax and ymin <= lat <= ymax):
        raise ParameterError(
            f"{parameter}: ({lon}, {lat}) is outside the city "
            f"({xmin}, {ymin}, {xmax}, {ymax}, EPSG:4326)",
            parameter=parameter,
        )
    return lon, lat


def cordon(place: tuple[float, float], radius_m: float) -> shapely.Polygon:
    """Return the cordon around a place: a circle of ``radius_m`` metres, in lon/lat.

    The circle is drawn in the city's metric CRS (``metric_crs`` of :mod:`layers.settings`)
    with 64 segments and cut to the city's extent.

    Parameters
    ----------
    place
        ``(lon, lat)``, EPSG:4326.
    radius_m
        Radius, m (> 0).

    Returns
    -------
    shapely.Polygon
        The cordon, EPSG:4326.
    """
    settings = get_settings()
    forward = Transformer.from_crs("EPSG:4326", settings.metric_crs, always_xy=True)
    back = Transformer.from_crs(settings.metric_crs, "EPSG:4326", always_xy=True)
    x, y = forward.transform(*place)
    circle = shapely.Point(x, y).buffer(radius_m, quad_segs=16)
    ring = shapely.transform(circle, lambda xy: _transformed(back, xy))
    clipped = ring.intersection(shapely.box(*settings.city_bbox))
    return clipped if isinstance(clipped, shapely.Polygon) else ring


def _transformed(transformer: Transformer, xy: Any) -> Any:
    lon, lat = transformer.transform(xy[:, 0], xy[:, 1])
    xy = xy.copy()
    xy[:, 0], xy[:, 1] = lon, lat
    return xy


def actor_name(given: str = "", *, parameter: str = "author") -> str:
    """Return who acts: the signed-in caller, or the name given when nobody is signed in.

    A write is credited to the caller the API authenticated: when a grant is in force
    (:func:`layers.access.current`) and its principal is not anonymous, its name is returned
    and ``given`` is ignored (a caller cannot write in another's name). For the store's owner
    (no grant: the CLI, a notebook) and for an anonymous caller, ``given`` is returned.

    Parameters
    ----------
    given
        The name the caller gave (free text, at most :data:`MAX_TEXT` characters).
    parameter
        The parameter named in an error.

    Returns
    -------
    str
        The name to record.

    Raises
    ------
    ParameterError
        If ``given`` is not text, or too long (naming ``parameter``).
    """
    given = _text(given, parameter)
    grant = access.current()
    if grant is not None and not grant.principal.anonymous:
        return grant.principal.name
    return given


def _scenario_name(plan: Preplan) -> str:
    return f"{plan.name[:50]}-{uuid.uuid4().hex[:8]}"


def apply(
    preplan: str | Preplan,
    place: Any,
    *,
    name: str | None = None,
    title: str | None = None,
    author: str = "",
    city: City | None = None,
    url: str | None = None,
) -> Scenario:
    """Apply a pre-plan at a place: make the scenario of that incident there.

    The scenario (status ``active``, over the live twin) holds:

    - the incident, a point of the ``incidents`` layer (``preplan/<scenario>/incident``) of the
      pre-plan's kind and severity, status ``open``;
    - the cordon, a circle of ``cordon_m`` around the place in the ``closures`` layer
      (``preplan/<scenario>/cordon``; none when ``cordon_m`` is 0), its properties saying
      ``"emergency_access": true``: routing in the scenario avoids every road it touches,
      except for the ``emergency`` profile (the units sent are let through);
    - in ``settings["broken"]`` the isolated line (``pipelines`` or ``power_lines``), and in
      ``settings["valves"]`` the isolation: the valves to close (or switches to open) nearest
      first, those that will not operate, the line, its distance from the place, and what loses
      supply (:meth:`routing.traces.Outage.summary`, the hydrants out); None when the pre-plan
      isolates nothing, or ``{"network", "note"}`` when it found no line it was not required to;
    - in ``settings["dispatch"]`` per unit kind: ``kind``, ``requested``, ``short`` (how many
      fewer are available) and ``units`` (``id``, ``kind``, ``name``, ``travel_s``,
      ``turnout_s``, ``total_s``, ``distance_m``), computed as
      :meth:`twin.City.nearest_units` answers *in the scenario* with the ``emergency``
      profile (:data:`DISPATCH_PROFILE`), the cordon open to it;
    - ``settings["notify"]`` (the contacts) and ``settings["preplan"]`` (``name``, ``vid``,
      ``version``, ``kind``, ``title``, ``place`` as ``[lon, lat]``, ``applied_at``).

    Nothing is left behind when it fails: the scenario is deleted.

    Parameters
    ----------
    preplan
        A stored pre-plan's name, an incident kind one is written for, or a :class:`Preplan`.
    place
        Where: ``(lon, lat)``, a shapely Point or a GeoJSON Point (EPSG:4326), in the city.
    name
        The scenario's name; ``<pre-plan>-<8 hex digits>`` by default.
    title
        The scenario's title; the pre-plan's titles and the place by default.
    author
        Who applies it, recorded only when nobody is signed in (the store's owner, or an
        anonymous caller); a signed-in caller is recorded by name (:func:`actor_name`).
    city
        The city to compute the dispatch with (its router is reused); one on ``url`` by default.
    url
        Database URL; the configured one (or ``city``'s) by default.

    Returns
    -------
    layers.scenarios.Scenario
        The scenario made.

    Raises
    ------
    PreplanNotFoundError
        If ``preplan`` names no stored pre-plan nor kind (parameter ``preplan``).
    ParameterError
        If ``place`` is not a position in the city, or no line of a required network is within
        the pre-plan's reach of it, or no open road is near enough to route units to it
        (parameter ``place``); for a bad ``name`` or ``title`` (naming them).
    layers.scenarios.ScenarioExistsError
        If a scenario has that name already.
    MissingInputError
        If the network a pre-plan requires holds no lines, or no source to trace supply from
        (HTTP 409, naming the layer to load).
    layers.errors.AccessError
        If the caller may not make or edit scenarios (:mod:`layers.scenarios` checks).
    """
    if city is not None and url is None:
        url = city.url
    plan = preplan if isinstance(preplan, Preplan) else get(preplan, url=url)
    lonlat = check_place(place)
    name = scenarios.check_name(name if name is not None else _scenario_name(plan))
    title = _text(title, "title") or (
        f"{plan.title_en} / {plan.title_zh} at ({lonlat[0]:.6f}, {lonlat[1]:.6f})"
    )
    author = actor_name(author)
    if city is None:
        from twin.city import City

        city = City(url)
    applied_at = datetime.now(UTC)
    meta = {
        "name": plan.name,
        "vid": plan.vid,
        "version": plan.version,
        "kind": plan.kind,
        "title": {"en": plan.title_en, "zh": plan.title_zh},
        "place": [lonlat[0], lonlat[1]],
        "applied_at": applied_at.isoformat(),
    }
    scenario = scenarios.create(
        name,
        title=title,
        description=plan.description,
        author=author,
        status="active",
        settings={"preplan": meta},
        url=url,
    )
    try:
        return _fill(scenario, plan, lonlat, applied_at, author, city, url)
    except BaseException:
        scenarios.delete(name, url=url)
        raise


def _fill(
    scenario: Scenario,
    plan: Preplan,
    lonlat: tuple[float, float],
    applied_at: datetime,
    author: str,
    city: City,
    url: str | None,
) -> Scenario:
    """Put a pre-plan's features, isolation, dispatch and contacts into its new scenario."""
    name = scenario.name
    note = f"pre-plan {plan.name} v{plan.version}"
    scenarios.put_feature(
        name,
        "incidents",
        {
            "type": "Feature",
            "id": f"preplan/{name}/incident",
            "geometry": {"type": "Point", "coordinates": list(lonlat)},
            "properties": {
                "kind": plan.kind,
                "severity": plan.severity,
                "status": "open",
                "starts_at": applied_at.isoformat(),
                "preplan": plan.name,
            },
        },
        author=author,
        note=note,
        url=url,
    )
    closure = None
    if plan.cordon_m > 0:
        closure = f"preplan/{name}/cordon"
        scenarios.put_feature(
            name,
            "closures",
            {
                "type": "Feature",
                "id": closure,
                "geometry": shapely.geometry.mapping(cordon(lonlat, plan.cordon_m)),
                "properties": {
                    "kind": plan.closure_kind,
                    "preplan": plan.name,
                    "radius_m": plan.cordon_m,
                    "emergency_access": True,
                },
            },
            author=author,
            note=f"{note}: cordon of {plan.cordon_m:g} m",
            url=url,
        )
    settings = dict(scenario.settings)
    settings["cordon"] = {
        "feature": closure,
        "radius_m": plan.cordon_m,
        "kind": plan.closure_kind,
        "emergency_access": closure is not None,
    }
    with scenarios.using(name, url=url):
        valves = _valves(plan.valves, lonlat, city)
    settings["valves"] = valves
    if valves is not None and valves.get("line") is not None:
        settings["broken"] = [{"layer": valves["layer"], "id": valves["line"]}]
    with scenarios.using(name, url=url):
        settings["dispatch"] = _dispatch(plan.units, lonlat, city)
    settings["notify"] = [{"id": c.id, "en": c.en, "zh": c.zh} for c in plan.notify]
    return scenarios.update(name, settings=settings, url=url)


def _valves(
    valves: Valves | None, lonlat: tuple[float, float], city: City
) -> dict[str, Any] | None:
    """Isolate the nearest line of the pre-plan's network: what to operate, what is lost."""
    if valves is None:
        return None
    try:
        net = city.utilities.network(valves.network)
    except MissingInputError:
        if valves.required:
            raise
        return {"network": valves.network, "note": f"no {valves.network} lines loaded"}
    found = locate(net, point=lonlat, max_distance_m=valves.search_m)
    if found is None:
        what = f"no {valves.network} line within {valves.search_m:g} m of the place"
        if valves.required:
            raise ParameterError(f"place: {what}", parameter="place")
        return {"network": valves.network, "note": what}
    distance, piece, position = found
    try:
        outage = isolate(net, edge=piece, position_m=position)
    except TopologyError as exc:  # a network with no source: supply cannot be traced
        if valves.required:
            nodes = NETWORK_LAYERS[valves.network][1]
            source = "substation" if valves.network == "power" else "source"
            raise MissingInputError(
                nodes,
                str(exc),
                f"import its {source} nodes with `twin ingest {nodes} FILE` (kind={source})",
                parameter="preplan",
            ) from None
        return {"network": valves.network, "note": str(exc)}
    return {
        "network": valves.network,
        "layer": NETWORK_LAYERS[valves.network][0],
        "line": str(outage.cause["line"]),
        "distance_m": round(distance, 2),
        "operate": [str(d) for d in outage.operate],
        "unable": [str(d) for d in outage.unable],
        "hydrants": [str(h) for h in outage.hydrants],
        "summary": outage.summary(),
    }


def _dispatch(
    units: Sequence[UnitRequest], lonlat: tuple[float, float], city: City
) -> list[dict[str, Any]]:
    """Find the nearest units of each kind the pre-plan sends, in the scenario in force."""
    dispatch = []
    for request in units:
        try:
            found = city.nearest_units(
                lonlat, kind=request.kind, k=request.count, profile=DISPATCH_PROFILE
            )
        except RoutingError as exc:
            if exc.parameter != "incident":
                raise
            raise ParameterError(
                f"place: units cannot be routed there: {exc}",
                parameter="place",
            ) from None
        dispatch.append(
            {
                "kind": request.kind,
                "requested": request.count,
                "short": request.count - len(found),
                "units": [
                    {
                        "id": unit.id,
                        "kind": unit.kind,
                        "name": unit.name,
                        "travel_s": round(unit.travel_s, 3),
                        "turnout_s": round(unit.turnout_s, 3),
                        "total_s": round(unit.total_s, 3),
                        "distance_m": round(unit.route.distance_m, 2),
                    }
                    for unit in found
                ],
            }
        )
    return dispatch
