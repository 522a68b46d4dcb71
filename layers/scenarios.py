"""What-if scenarios: named, stored overlays of edits over the twin, never touching the base.

A scenario (migration 0017) has a name, a title, a description, an author, a status (``draft``,
``active``, ``archived``), the moment of the twin it is built on (``base_at``; None for the live
twin) and settings that are not features:

``flood``
    ``{"raster": NAME, "threshold_m": 0.3}``: a stored depth raster; roads under more water
    than the threshold are closed to routing in the scenario.
``broken``
    ``[{"layer": "pipelines", "id": ...}, ...]``: assets out of order (pipes, pipe nodes, power
    lines and nodes) whose customers the scenario's figures count as cut off.
``signal_plan``
    The name of a stored signal plan the scenario runs.

Its edits (``scenario_edits``) add, change or retire features of any stored layer: a closure, a
new fire station, a station moved or out of service, a road retired, a new building. Each is
checked against the catalog exactly as an edit of the base is (:func:`layers.editing.validated_row`)
and kept as features are, versioned: changing an edit closes its row and opens another, so the
scenario's history can be read back (:func:`edits` with ``history=True``).

Reads in a scenario: inside ``with using(name):`` every reader built on
:func:`layers.access.relation` (features, tiles, one-map answers,
:func:`layers.queries.read_layer`), and the router, answers as if the overlay were the city
(:mod:`layers.overlay`); outside it, nothing of the scenario shows. Two scenarios never see
each other's edits.
"""

from __future__ import annotations

import copy
import json
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from typing import Any

import pandas as pd
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from layers import access, overlay
from layers.access import Permission
from layers.catalog import LAYERS, Layer
from layers.database import current_reads, cursor, database_url, get_engine
from layers.editing import checked_id, validated_row
from layers.errors import AccessError, ParameterError
from layers.overlay import Overlay
from layers.queries import as_of
from layers.versions import watched_versions

#: A scenario's name: a slug, as in a URL (``bridge-works``, ``flood_2m``).
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
#: Names that are not scenarios: ``base`` is the twin itself wherever a scenario is named.
RESERVED = frozenset({"base", "compare"})
STATUSES = ("draft", "active", "archived")
#: Layers whose features a scenario's ``broken`` setting may name.
BREAKABLE = ("pipelines", "pipe_nodes", "power_lines", "power_nodes")
#: Longest title and description kept, characters.
MAX_TEXT = 4000


class ScenarioNotFoundError(LookupError):
    """No scenario has that name (HTTP 404).

    Parameters
    ----------
    name
        The name asked for.
    """

    def __init__(self, name: str):
        super().__init__(f"no scenario named {name!r}: `twin scenarios list` shows them")
        self.name = name
        self.parameter = "scenario"


class ScenarioExistsError(ValueError):
    """A scenario with that name exists already (HTTP 409)."""

    def __init__(self, name: str):
        super().__init__(f"a scenario named {name!r} exists already")
        self.parameter = "name"


class ScenarioConflictError(ValueError):
    """A change the scenario's state refuses (HTTP 409): archived, or still drilled.

    Parameters
    ----------
    message
        What is refused and why.
    parameter
        The parameter at fault.
    """

    def __init__(self, message: str, *, parameter: str = "scenario"):
        super().__init__(message)
        self.parameter = parameter


class ScenarioChangedError(ValueError):
    """The scenario changed since the revision an edit was made from (HTTP 412).

    Parameters
    ----------
    name
        The scenario.
    revision
        Its current revision.
    """

    def __init__(self, name: str, revision: int):
        super().__init__(
            f"scenario {name!r} is at revision {revision}, not the one the edit names "
            "(If-Match): read it again and redo the edit"
        )
        self.revision = revision
        self.parameter = "If-Match"


@dataclass(frozen=True)
class Scenario:
    """One stored scenario.

    Attributes
    ----------
    id
        ``scenarios.id``.
    name
        Its name (a slug).
    title, description, author
        Free text.
    status
        ``draft``, ``active`` or ``archived``.
    base_at
        The moment of the twin it is built on; None for the live twin.
    settings
        ``flood``, ``broken``, ``signal_plan`` (see the module), and any other keys a
        pre-plan records.
    created_at, updated_at
        When it was made and last changed (UTC).
    revision
        Grows with every edit.
    edits
        Current edits per layer.
    """

    id: int
    name: str
    title: str
    description: str
    author: str
    status: str
    base_at: datetime | None
    settings: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    revision: int
    edits: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Return the scenario as JSON (RFC 3339 times), as the caller in force may see it.

        Edits and settings naming a layer the caller may not read are left out.
        """

        def text(moment: datetime | None) -> str | None:
            return None if moment is None else moment.isoformat()

        readable = set(access.visible(list(LAYERS)))
        return {
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "author": self.author,
            "status": self.status,
            "base_at": text(self.base_at),
            "settings": visible_settings(self.settings, readable),
            "created_at": text(self.created_at),
            "updated_at": text(self.updated_at),
            "revision": self.revision,
            "edits": {k: n for k, n in self.edits.items() if k in readable},
        }

    def overlay(self, moment: datetime | None = None) -> Overlay:
        """Return the overlay reads use for this scenario (at ``moment``, else ``base_at``)."""
        return Overlay(
            id=self.id,
            name=self.name,
            revision=self.revision,
            base_at=self.base_at,
            moment=moment if moment is not None else self.base_at,
            settings=self.settings,
            edited=tuple(sorted(self.edits.items())),
        )


def visible_settings(
    settings: Mapping[str, Any], readable: set[str] | None = None
) -> dict[str, Any]:
    """Return a scenario's settings without what names a layer the caller may not read.

    Parameters
    ----------
    settings
        The settings; an entry (or a list's item) ``{"layer": L, ...}`` names layer ``L``.
    readable
        The layers the caller reads; those the grant in force reads by default.

    Returns
    -------
    dict
        The settings the caller may see (and compute with).
    """
    if readable is None:
        readable = set(access.visible(list(LAYERS)))

    def seen(value: Any) -> bool:
        return not (isinstance(value, Mapping) and value.get("layer", "") in set(LAYERS) - readable)

    out: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, list):
            out[key] = [item for item in value if seen(item)]
        elif seen(value):
            out[key] = value
    return out


@dataclass(frozen=True)
class ScenarioEdit:
    """An edit just stored in a scenario.

    Attributes
    ----------
    scenario
        The scenario's name.
    layer
        Layer id.
    feature_id
        The feature.
    op
        ``add`` (not in the base), ``change`` or ``retire``; ``drop`` when an edit was undone.
    revision
        The scenario's revision after it.
    made_at
        When (UTC, the store's clock).
    """

    scenario: str
    layer: str
    feature_id: str
    op: str
    revision: int
    made_at: datetime


# -- the scenarios ------------------------------------------------------------------------------

_COLUMNS = sql.SQL(
    "s.id, s.name, s.title, s.description, s.author, s.status, s.base_at, s.settings, "
    "s.created_at, s.updated_at, s.revision, "
    "(SELECT coalesce(jsonb_object_agg(layer, n), '{}'::jsonb) FROM "
    "(SELECT layer, count(*) AS n FROM scenario_edits "
    "WHERE scenario_id = s.id AND valid_to IS NULL "
    "GROUP BY layer) AS counted)"
)


_BY_NAME = sql.SQL("SELECT {} FROM scenarios AS s WHERE s.name = %s").format(_COLUMNS)


def _scenario(row: Sequence[Any]) -> Scenario:
    return Scenario(
        id=int(row[0]),
        name=str(row[1]),
        title=str(row[2]),
        description=str(row[3]),
        author=str(row[4]),
        status=str(row[5]),
        base_at=row[6],
        settings=dict(row[7] or {}),
        created_at=row[8],
        updated_at=row[9],
        revision=int(row[10]),
        edits={str(k): int(v) for k, v in (row[11] or {}).items()},
    )


#: The guarded resource scenarios are (:data:`layers.access.FEEDS`, migration 0017): reading
#: one needs ``read`` on it, making or changing one ``edit`` (planners, traffic engineers,
#: commanders), changing another's ``admin``.
RESOURCE = "scenarios"
#: Deepest nesting and largest size of a scenario's settings (JSON).
MAX_SETTINGS_DEPTH = 8
MAX_SETTINGS_BYTES = 64 * 1024


def _require(permission: Permission) -> None:
    """Refuse (401/403) a caller who may not ``permission`` scenarios; note it for the audit."""
    try:
        access.require(RESOURCE, permission)
    except AccessError as exc:
        what = "read scenarios" if permission == "read" else "make or change scenarios"
        anonymous = exc.status == 401
        raise AccessError(
            f"sign in to {what}" if anonymous else f"the caller's roles may not {what}",
            status=401 if anonymous else 403,
            parameter="scenario",
        ) from None


def _caller() -> str | None:
    """Return the signed-in caller's name; None for the owner or an anonymous caller."""
    grant = access.current()
    if grant is None or grant.principal.anonymous:
        return None
    return grant.principal.name


def _may_change(scenario: Scenario, *, revision: int | None = None) -> None:
    """Refuse a change of another's scenario (403), of an archived one (409), of a stale one."""
    grant = access.current()
    caller = _caller()
    if (
        grant is not None
        and scenario.author
        and caller != scenario.author
        and not grant.may(RESOURCE, "admin")
    ):
        raise AccessError(
            f"scenario {scenario.name!r} is {scenario.author}'s: only its author or an "
            "administrator changes it",
            status=403,
            parameter="scenario",
        )
    if revision is not None and revision != scenario.revision:
        raise ScenarioChangedError(scenario.name, scenario.revision)


def check_name(name: Any, *, parameter: str = "name") -> str:
    """Return a scenario name, or refuse it.

    Parameters
    ----------
    name
        The name given.
    parameter
        The parameter named in the error.

    Returns
    -------
    str
        The name.

    Raises
    ------
    ParameterError
        Unless it is a slug of 1 to 63 lower-case letters, digits, ``-`` and ``_`` (starting
        with a letter or digit) other than ``base`` and ``compare``.
    """
    if not isinstance(name, str) or not NAME.match(name):
        raise ParameterError(
            f"{parameter}: {name!r} is not a scenario name: 1 to 63 lower-case letters, digits, "
            "'-' and '_', starting with a letter or digit",
            parameter=parameter,
        )
    if name in RESERVED:
        raise ParameterError(
            f"{parameter}: {name!r} is reserved ('base' is the twin itself)", parameter=parameter
        )
    return name


def _text(value: Any, parameter: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ParameterError(f"{parameter}: expected text", parameter=parameter)
    if len(value) > MAX_TEXT or "\x00" in value:
        raise ParameterError(
            f"{parameter}: at most {MAX_TEXT} characters, no NUL", parameter=parameter
        )
    return value


def _status(value: Any) -> str:
    if value not in STATUSES:
        raise ParameterError(
            f"status: {value!r} is not one of {', '.join(STATUSES)}", parameter="status"
        )
    return str(value)


def _moment(value: datetime | str | None, parameter: str) -> datetime | None:
    try:
        return as_of(value)
    except (TypeError, ValueError):
        raise ParameterError(
            f"{parameter}: {value!r} is not an RFC 3339 moment", parameter=parameter
        ) from None


def check_settings(settings: Any) -> dict[str, Any]:
    """Return a scenario's settings checked, or refuse them naming the member at fault.

    Parameters
    ----------
    settings
        A JSON object: ``flood`` (``raster`` name, ``threshold_m`` >= 0, 0.3 by default),
        ``broken`` (a list of ``{"layer", "id"}`` with the layer one of :data:`BREAKABLE`),
        ``signal_plan`` (a name); other keys are kept as given (JSON).

    Returns
    -------
    dict
        The settings, with defaults filled in.

    Raises
    ------
    ParameterError
        Naming ``settings.<member>`` and what is wrong.
    """
    if settings is None:
        return {}
    if not isinstance(settings, Mapping):
        raise ParameterError("settings: expected a JSON object", parameter="settings")
    if _depth(settings) > MAX_SETTINGS_DEPTH:
        raise ParameterError(
            f"settings: nested deeper than {MAX_SETTINGS_DEPTH} levels", parameter="settings"
        )
    checked = dict(settings)
    flood = checked.get("flood")
    if flood is not None:
        if not isinstance(flood, Mapping) or not isinstance(flood.get("raster"), str):
            raise ParameterError(
                'settings.flood: expected {"raster": NAME, "threshold_m": metres}',
                parameter="settings.flood",
            )
        threshold = flood.get("threshold_m", 0.3)
        if isinstance(threshold, bool) or not isinstance(threshold, int | float):
            raise ParameterError(
                "settings.flood.threshold_m: expected a number of metres",
                parameter="settings.flood.threshold_m",
            )
        if not 0 <= float(threshold) < 100:
            raise ParameterError(
                "settings.flood.threshold_m: expected 0 to 100 m",
                parameter="settings.flood.threshold_m",
            )
        checked["flood"] = {"raster": flood["raster"], "threshold_m": float(threshold)}
    broken = checked.get("broken")
    if broken is not None:
        if not isinstance(broken, list):
            raise ParameterError(
                "settings.broken: expected a list of {layer, id}", parameter="settings.broken"
            )
        for i, asset in enumerate(broken):
            where = f"settings.broken[{i}]"
            if not isinstance(asset, Mapping) or asset.get("layer") not in BREAKABLE:
                raise ParameterError(
                    f"{where}: expected {{layer, id}} with layer one of {', '.join(BREAKABLE)}",
                    parameter=where,
                )
            checked_id(asset.get("id"), parameter=f"{where}.id")
        checked["broken"] = [{"layer": a["layer"], "id": str(a["id"])} for a in broken]
    plan = checked.get("signal_plan")
    if plan is not None and (not isinstance(plan, str) or not plan.strip()):
        raise ParameterError(
            "settings.signal_plan: expected a stored plan's name", parameter="settings.signal_plan"
        )
    try:
        size = len(json.dumps(checked, allow_nan=False).encode())
    except (TypeError, ValueError, RecursionError) as exc:
        raise ParameterError(f"settings: not JSON ({exc})", parameter="settings") from None
    if size > MAX_SETTINGS_BYTES:
        raise ParameterError(
            f"settings: {size} bytes, more than {MAX_SETTINGS_BYTES}", parameter="settings"
        )
    return checked


def _depth(value: Any, level: int = 1) -> int:
    """Return how deep a JSON value nests (stops counting past the limit)."""
    if level > MAX_SETTINGS_DEPTH or not isinstance(value, Mapping | list):
        return level
    items = value.values() if isinstance(value, Mapping) else value
    return max((_depth(item, level + 1) for item in items), default=level)


_RASTER_KIND = "SELECT kind FROM rasters WHERE name = %s AND valid_to IS NULL"
_PLAN = "SELECT 1 FROM signal_plans WHERE name = %s AND valid_to IS NULL"


def _check_in_store(cur: Any, settings: Mapping[str, Any], scenario_id: int | None) -> None:
    """Refuse settings naming what the store does not hold (or the caller may not read)."""
    flood = settings.get("flood")
    if flood:
        cur.execute(_RASTER_KIND, (flood["raster"],))
        row = cur.fetchone()
        if row is None or row[0] != "flood_depth":
            found = "no raster" if row is None else f"a {row[0]} raster, not a flood depth,"
            raise ParameterError(
                f"settings.flood.raster: {found} named {flood['raster']!r} "
                "(`twin raster ingest FILE --kind flood_depth`)",
                parameter="settings.flood.raster",
            )
    for i, asset in enumerate(settings.get("broken") or ()):
        where = f"settings.broken[{i}].id"
        layer = LAYERS[asset["layer"]]
        try:
            access.require(layer.id)
        except AccessError:
            raise ParameterError(
                f"{where}: {layer.id} has no feature {asset['id']!r}", parameter=where
            ) from None
        if not _in_base(cur, layer, asset["id"], None, seen=True) and not (
            scenario_id is not None and _added(cur, scenario_id, layer, asset["id"])
        ):
            raise ParameterError(
                f"{where}: {layer.id} has no feature {asset['id']!r}", parameter=where
            )
    plan = settings.get("signal_plan")
    if plan is not None:
        cur.execute(_PLAN, (plan,))
        if cur.fetchone() is None:
            raise ParameterError(
                f"settings.signal_plan: no stored signal plan named {plan!r}",
                parameter="settings.signal_plan",
            )


def _added(cur: Any, scenario_id: int, layer: Layer, feature_id: str) -> bool:
    cur.execute(
        "SELECT 1 FROM scenario_edits WHERE scenario_id = %s AND layer = %s AND feature_id = %s "
        "AND valid_to IS NULL AND op <> 'retire'",
        (scenario_id, layer.id, feature_id),
    )
    return cur.fetchone() is not None


def create(
    name: str,
    *,
    title: str = "",
    description: str = "",
    author: str = "",
    status: str = "draft",
    base_at: datetime | str | None = None,
    settings: Mapping[str, Any] | None = None,
    url: str | None = None,
) -> Scenario:
    """Store a new, empty scenario.

    Parameters
    ----------
    name
        Its name (see :func:`check_name`).
    title, description, author
        Free text, at most :data:`MAX_TEXT` characters each.
    status
        ``draft`` (default), ``active`` or ``archived``.
    base_at
        The moment of the twin it is built on (RFC 3339; UTC if naive); None: the live twin.
    settings
        See :func:`check_settings`.
    url
        Database URL; the configured one by default.

    Returns
    -------
    Scenario
        The scenario.

    Raises
    ------
    ParameterError
        For a bad name, text, status, moment (``base_at`` in the future) or setting (one
        naming a raster, asset or plan the store does not hold).
    ScenarioExistsError
        If the name is taken.
    AccessError
        If the caller may not make scenarios (401/403).

    Notes
    -----
    A signed-in caller is the author, whatever ``author`` says.
    """
    _require("edit")
    check_name(name)
    moment = _moment(base_at, "base_at")
    if moment is not None and moment > datetime.now(UTC):
        raise ParameterError(
            "base_at: a scenario is built on the twin as it is or as it was, not in the future",
            parameter="base_at",
        )
    checked = check_settings(settings)
    values = {
        "name": name,
        "title": _text(title, "title"),
        "description": _text(description, "description"),
        "author": _caller() or _text(author, "author"),
        "status": _status(status),
        "base_at": moment,
        "settings": Jsonb(checked),
    }
    with _writing(url) as cur:
        _check_in_store(cur, checked, None)
        cur.execute(
            "INSERT INTO scenarios (name, title, description, author, status, base_at, settings) "
            "VALUES (%(name)s, %(title)s, %(description)s, %(author)s, %(status)s, %(base_at)s, "
            "%(settings)s) ON CONFLICT (name) DO NOTHING RETURNING id",
            values,
        )
        made = cur.fetchone()
    if made is None:
        raise ScenarioExistsError(name)
    return get(name, url=url)


def get(name: str, *, url: str | None = None) -> Scenario:
    """Return a stored scenario.

    Parameters
    ----------
    name
        Its name.
    url
        Database URL; the configured one by default.

    Returns
    -------
    Scenario
        The scenario, with its current edits counted per layer.

    Raises
    ------
    ScenarioNotFoundError
        If none has that name.
    """
    _require("read")
    if not isinstance(name, str):
        raise ScenarioNotFoundError(str(name))
    # every change of a scenario or its edits moves the 'scenarios' counter (migration 0017),
    # held in memory by layers.versions: a read in a scenario (every facade call and request
    # naming one) costs no query while nothing changed (bench/scenarios.py: 0.5-0.75 ms each)
    counter = watched_versions([RESOURCE], url=url)[0]
    key = (database_url(url), name)
    kept = _KEPT.get(key)
    if kept is not None and kept[0] == counter:
        return _copy(kept[1])
    with current_reads(url), cursor(url) as cur:  # a store as new as the counter
        cur.execute(_BY_NAME, (name,))
        row = cur.fetchone()
    if row is None:
        raise ScenarioNotFoundError(name)
    found = _scenario(row)
    with _KEPT_LOCK:
        if len(_KEPT) > 1000:
            _KEPT.clear()
        _KEPT[key] = (counter, found)
    return _copy(found)


#: Scenarios read, by (database, name), with the 'scenarios' counter they were read at.
_KEPT: dict[tuple[str, str], tuple[int, Scenario]] = {}
_KEPT_LOCK = threading.Lock()


def _copy(scenario: Scenario) -> Scenario:
    """Return a scenario whose settings and edit counts the caller may change freely."""
    return replace(scenario, settings=copy.deepcopy(scenario.settings), edits=dict(scenario.edits))


def list_scenarios(*, url: str | None = None) -> list[Scenario]:
    """Return every stored scenario, by name.

    Parameters
    ----------
    url
        Database URL; the configured one by default.

    Returns
    -------
    list of Scenario
        The scenarios.
    """
    _require("read")
    with cursor(url) as cur:
        cur.execute(sql.SQL("SELECT {} FROM scenarios AS s ORDER BY s.name").format(_COLUMNS))
        return [_scenario(row) for row in cur.fetchall()]


def update(
    name: str,
    *,
    title: str | None = None,
    description: str | None = None,
    status: str | None = None,
    settings: Mapping[str, Any] | None = None,
    if_revision: int | None = None,
    url: str | None = None,
) -> Scenario:
    """Change a scenario's text, status or settings (what is None is left as it is).

    Settings replace the stored ones whole; a change of settings counts as an edit
    (``revision`` grows: what reads in the scenario answer may change). An archived scenario
    takes only a change of status (to bring it back) and of its text.

    Parameters
    ----------
    name
        The scenario.
    title, description, status, settings
        See :func:`create`.
    if_revision
        The revision the change was made from (HTTP ``If-Match``); None: any.
    url
        Database URL; the configured one by default.

    Returns
    -------
    Scenario
        The scenario after the change.

    Raises
    ------
    ScenarioNotFoundError
        If none has that name.
    ParameterError
        For a bad value.
    AccessError
        If the caller may not change scenarios, or this one (another's: 403).
    ScenarioChangedError
        If ``if_revision`` is not the current revision.
    ScenarioConflictError
        For a change of settings of an archived scenario.
    """
    _require("edit")
    changes: dict[str, Any] = {}
    if title is not None:
        changes["title"] = _text(title, "title")
    if description is not None:
        changes["description"] = _text(description, "description")
    if status is not None:
        changes["status"] = _status(status)
    checked = check_settings(settings) if settings is not None else None
    if checked is not None:
        changes["settings"] = Jsonb(checked)
    assignments: list[sql.Composable] = [
        sql.SQL("{} = %({})s").format(sql.Identifier(k), sql.SQL(k)) for k in changes
    ]
    assignments.append(sql.SQL("updated_at = clock_timestamp()"))
    if checked is not None:
        assignments.append(sql.SQL("revision = revision + 1"))
    with _editing(name, url, revision=if_revision, archived_ok=checked is None) as (
        cur,
        scenario,
        _,
    ):
        if checked is not None:
            _check_in_store(cur, checked, scenario.id)
        cur.execute(
            sql.SQL("UPDATE scenarios SET {} WHERE id = %(id)s").format(
                sql.SQL(", ").join(assignments)
            ),
            {**changes, "id": scenario.id},
        )
    return get(name, url=url)


def delete(name: str, *, url: str | None = None) -> None:
    """Delete a scenario and its edits (the base is untouched; archive it to keep it instead).

    Parameters
    ----------
    name
        The scenario.
    url
        Database URL; the configured one by default.

    Raises
    ------
    ScenarioNotFoundError
        If none has that name.
    AccessError
        If the caller may not change scenarios, or this one (another's: 403).
    ScenarioConflictError
        If a drill was run on it (its record needs it: archive it instead).
    """
    _require("edit")
    try:
        with _editing(name, url, archived_ok=True) as (cur, scenario, _):
            cur.execute("DELETE FROM scenarios WHERE id = %s", (scenario.id,))
    except psycopg.errors.ForeignKeyViolation:
        raise ScenarioConflictError(
            f"scenario {name!r} was drilled: its drills' records need it; archive it instead "
            "(status archived)"
        ) from None


# -- edits --------------------------------------------------------------------------------------


def _stored_layer(layer_id: Any) -> Layer:
    if not isinstance(layer_id, str) or layer_id not in LAYERS:
        raise ParameterError(
            f"layer: {layer_id!r} is not a stored layer; layers: {', '.join(LAYERS)}",
            parameter="layer",
        )
    return LAYERS[layer_id]


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


def _edit_row(layer: Layer, row: Mapping[str, Any]) -> dict[str, Any]:
    """Return a validated row's typed attributes and props as JSON (jsonb_populate_record's)."""
    stored: dict[str, Any] = {}
    for spec in layer.fields:
        value = row.get(spec.name)
        if spec.kind == "json" and isinstance(value, str):
            value = json.loads(value)
        stored[spec.name] = value
    props = row.get("props")
    stored["props"] = json.loads(props) if isinstance(props, str) else dict(props or {})
    return json.loads(json.dumps(stored, default=_json_value))


@contextmanager
def _writing(url: str | None) -> Iterator[Any]:
    """Lend a cursor in one write transaction on the primary, as the store's owner."""
    with get_engine(url).begin() as connection:
        raw = connection.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cur:
            yield cur


@contextmanager
def _editing(
    name: str, url: str | None, *, revision: int | None = None, archived_ok: bool = False
) -> Iterator[tuple[Any, Scenario, datetime]]:
    """One write to a scenario: its row locked (edits of one scenario queue up), the clock read.

    The caller's right to change it, the revision it names and its status are checked under
    the lock.
    """
    with _writing(url) as cur:
        cur.execute(sql.Composed([_BY_NAME, sql.SQL(" FOR UPDATE")]), (name,))
        row = cur.fetchone()
        if row is None:
            raise ScenarioNotFoundError(name)
        scenario = _scenario(row)
        _may_change(scenario, revision=revision)
        if scenario.status == "archived" and not archived_ok:
            raise ScenarioConflictError(
                f"scenario {name!r} is archived: set its status to draft or active to edit it"
            )
        cur.execute("SELECT clock_timestamp()")
        now = cur.fetchone()
        assert now is not None
        yield cur, scenario, now[0]


def _in_base(
    cur: Any, layer: Layer, feature_id: str, moment: datetime | None, *, seen: bool = False
) -> bool:
    """Whether the base holds the feature (at the scenario's moment, else now).

    ``seen``: as the caller sees the base (its row rules); else whether it exists at all.
    """
    with overlay.entered(None):  # the base itself, whatever scenario the caller reads in
        relation = access.relation(layer) if seen else sql.Identifier(layer.table)
    cur.execute(
        sql.SQL("SELECT 1 FROM {rel} AS t WHERE id = %(id)s AND {when} LIMIT 1").format(
            rel=relation, when=overlay.valid_at(moment)
        ),
        {"id": feature_id},
    )
    return cur.fetchone() is not None


def _base_op(cur: Any, layer: Layer, feature_id: str, scenario: Scenario) -> bool:
    """Whether an edit of the feature changes a base feature (else it adds one).

    A base feature hidden from the caller is not the caller's to change or to shadow.
    """
    if not _in_base(cur, layer, feature_id, scenario.base_at):
        return False
    if not _in_base(cur, layer, feature_id, scenario.base_at, seen=True):
        raise ParameterError(
            f"id: {feature_id!r} is not free in {layer.id}: choose another", parameter="id"
        )
    return True


def _current_edit(cur: Any, scenario: Scenario, layer: Layer, feature_id: str) -> str | None:
    cur.execute(
        "SELECT op FROM scenario_edits WHERE scenario_id = %s AND layer = %s AND feature_id = %s "
        "AND valid_to IS NULL",
        (scenario.id, layer.id, feature_id),
    )
    row = cur.fetchone()
    return None if row is None else str(row[0])


def _close_edit(cur: Any, scenario: Scenario, layer: Layer, feature_id: str, now: datetime) -> None:
    cur.execute(
        "UPDATE scenario_edits SET valid_to = %s WHERE scenario_id = %s AND layer = %s "
        "AND feature_id = %s AND valid_to IS NULL",
        (now, scenario.id, layer.id, feature_id),
    )


def _bump(cur: Any, scenario: Scenario, now: datetime) -> int:
    cur.execute(
        "UPDATE scenarios SET revision = revision + 1, updated_at = %s WHERE id = %s "
        "RETURNING revision",
        (now, scenario.id),
    )
    row = cur.fetchone()
    assert row is not None
    return int(row[0])


def put_feature(
    name: str,
    layer_id: str,
    feature: Mapping[str, Any],
    *,
    author: str = "",
    note: str = "",
    if_revision: int | None = None,
    url: str | None = None,
) -> ScenarioEdit:
    """Add a feature to a layer in a scenario, or change one (the whole new feature).

    Parameters
    ----------
    name
        The scenario.
    layer_id
        A stored layer (any: roads, buildings, resources, closures, pipelines ...).
    feature
        A GeoJSON Feature (CRS84) with its ``id``: a feature the base holds is changed in the
        scenario, any other is added. Checked against the catalog as any edit is.
    author, note
        Who made the edit (a signed-in caller is the author, whatever this says) and why.
    if_revision
        The scenario's revision the edit was made from (HTTP ``If-Match``); None: any.
    url
        Database URL; the configured one by default.

    Returns
    -------
    ScenarioEdit
        What was stored (``op`` ``add`` or ``change``).

    Raises
    ------
    ScenarioNotFoundError
        If no scenario has that name.
    ParameterError
        For an unknown layer, a missing or bad id (one the base holds out of the caller's
        sight), or a feature the catalog refuses (naming the attribute).
    AccessError
        If the caller may not read the layer, or change scenarios, or this one.
    ScenarioChangedError
        If ``if_revision`` is not the current revision.
    ScenarioConflictError
        If the scenario is archived.
    """
    _require("edit")
    layer = _stored_layer(layer_id)
    access.require(layer.id)
    if not isinstance(feature, Mapping):
        raise ParameterError("feature: expected a GeoJSON Feature object", parameter="feature")
    feature_id = checked_id(feature.get("id"), parameter="id")
    row = validated_row(layer, feature_id, feature)
    stored = _edit_row(layer, row)
    author, note = _caller() or _text(author, "author"), _text(note, "note")
    with _editing(name, url, revision=if_revision) as (cur, scenario, now):
        op = "change" if _base_op(cur, layer, feature_id, scenario) else "add"
        _close_edit(cur, scenario, layer, feature_id, now)
        cur.execute(
            "INSERT INTO scenario_edits (scenario_id, layer, feature_id, op, row, geom, author, "
            "note, valid_from) VALUES (%s, %s, %s, %s, %s, ST_GeomFromEWKB(%s), %s, %s, %s)",
            (scenario.id, layer.id, feature_id, op, Jsonb(stored), row["geom"], author, note, now),
        )
        revision = _bump(cur, scenario, now)
    access.note(layer.id, count=1, ids=[feature_id])
    return ScenarioEdit(name, layer.id, feature_id, op, revision, now)


def retire_feature(
    name: str,
    layer_id: str,
    feature_id: str,
    *,
    author: str = "",
    note: str = "",
    if_revision: int | None = None,
    url: str | None = None,
) -> ScenarioEdit:
    """Retire a feature in a scenario: it is gone there, and still in the base.

    A feature the scenario itself added is simply gone (``op`` ``drop``).

    Parameters
    ----------
    name
        The scenario.
    layer_id
        A stored layer.
    feature_id
        The feature.
    author, note
        Who (a signed-in caller is the author, whatever this says) and why.
    if_revision
        The scenario's revision the edit was made from (HTTP ``If-Match``); None: any.
    url
        Database URL; the configured one by default.

    Returns
    -------
    ScenarioEdit
        What was stored.

    Raises
    ------
    ScenarioNotFoundError
        If no scenario has that name.
    ParameterError
        For an unknown layer or a feature neither the base (as the caller sees it) nor the
        scenario holds (parameter ``featureId``).
    AccessError, ScenarioChangedError, ScenarioConflictError
        As :func:`put_feature`.
    """
    _require("edit")
    layer = _stored_layer(layer_id)
    access.require(layer.id)
    feature_id = checked_id(feature_id, parameter="featureId")
    author, note = _caller() or _text(author, "author"), _text(note, "note")
    with _editing(name, url, revision=if_revision) as (cur, scenario, now):
        current = _current_edit(cur, scenario, layer, feature_id)
        in_base = _in_base(cur, layer, feature_id, scenario.base_at, seen=True)
        if current == "retire" or (current is None and not in_base):
            raise ParameterError(
                f"featureId: {layer.id} has no feature {feature_id!r} in scenario {name!r}",
                parameter="featureId",
            )
        _close_edit(cur, scenario, layer, feature_id, now)
        op = "retire" if in_base else "drop"
        if in_base:
            cur.execute(
                "INSERT INTO scenario_edits (scenario_id, layer, feature_id, op, author, note, "
                "valid_from) VALUES (%s, %s, %s, 'retire', %s, %s, %s)",
                (scenario.id, layer.id, feature_id, author, note, now),
            )
        revision = _bump(cur, scenario, now)
    access.note(layer.id, count=1, ids=[feature_id])
    return ScenarioEdit(name, layer.id, feature_id, op, revision, now)


def drop_edit(
    name: str,
    layer_id: str,
    feature_id: str,
    *,
    if_revision: int | None = None,
    url: str | None = None,
) -> ScenarioEdit:
    """Undo a scenario's edit of a feature: the base's feature shows again in it.

    Parameters
    ----------
    name
        The scenario.
    layer_id
        A stored layer.
    feature_id
        The feature.
    if_revision
        The scenario's revision the undo was made from (HTTP ``If-Match``); None: any.
    url
        Database URL; the configured one by default.

    Returns
    -------
    ScenarioEdit
        ``op`` ``drop``.

    Raises
    ------
    ScenarioNotFoundError
        If no scenario has that name.
    ParameterError
        If the scenario holds no edit of that feature.
    AccessError, ScenarioChangedError, ScenarioConflictError
        As :func:`put_feature`.
    """
    _require("edit")
    layer = _stored_layer(layer_id)
    access.require(layer.id)
    feature_id = checked_id(feature_id, parameter="featureId")
    with _editing(name, url, revision=if_revision) as (cur, scenario, now):
        if _current_edit(cur, scenario, layer, feature_id) is None:
            raise ParameterError(
                f"featureId: scenario {name!r} holds no edit of {layer.id} {feature_id!r}",
                parameter="featureId",
            )
        _close_edit(cur, scenario, layer, feature_id, now)
        revision = _bump(cur, scenario, now)
    return ScenarioEdit(name, layer.id, feature_id, "drop", revision, now)


def edits(name: str, *, history: bool = False, url: str | None = None) -> pd.DataFrame:
    """Return a scenario's edits.

    Parameters
    ----------
    name
        The scenario.
    history
        Also the edits later changed or undone (``valid_to`` set).
    url
        Database URL; the configured one by default.

    Returns
    -------
    pandas.DataFrame
        ``layer``, ``feature_id``, ``op``, ``author``, ``note``, ``valid_from``,
        ``valid_to``, ordered by when they were made.

    Raises
    ------
    ScenarioNotFoundError
        If no scenario has that name.
    """
    scenario = get(name, url=url)
    with cursor(url) as cur:
        cur.execute(
            "SELECT layer, feature_id, op, author, note, valid_from, valid_to "
            "FROM scenario_edits WHERE scenario_id = %s AND (%s OR valid_to IS NULL) "
            "ORDER BY valid_from, eid",
            (scenario.id, history),
        )
        rows = cur.fetchall()
        if access.current() is not None:  # only what the caller sees, in the base or in it
            seen = _seen_ids(cur, scenario, {(str(r[0]), str(r[1])) for r in rows})
            rows = [r for r in rows if (r[0], r[1]) in seen]
    columns = ["layer", "feature_id", "op", "author", "note", "valid_from", "valid_to"]
    frame = pd.DataFrame.from_records(rows, columns=columns)
    for column in ("valid_from", "valid_to"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame


def _seen_ids(cur: Any, scenario: Scenario, pairs: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """Return the (layer, feature id) pairs the caller may see, in the base or in the scenario."""
    readable = set(access.visible(list(LAYERS)))
    seen: set[tuple[str, str]] = set()
    for layer_id in sorted({layer for layer, _ in pairs} & readable):
        ids = [feature_id for layer, feature_id in pairs if layer == layer_id]
        for state in (None, scenario.overlay()):
            with overlay.entered(state):
                relation = access.relation(LAYERS[layer_id])
            cur.execute(
                sql.SQL("SELECT DISTINCT id FROM {} AS t WHERE id = ANY(%s)").format(relation),
                (ids,),
            )
            seen |= {(layer_id, str(row[0])) for row in cur.fetchall()}
    return seen


# -- reading in a scenario ----------------------------------------------------------------------


@contextmanager
def using(
    scenario: str | Scenario | None,
    *,
    at: datetime | str | None = None,
    url: str | None = None,
) -> Iterator[Scenario | None]:
    """Answer every read in a block as if the scenario's overlay were the city.

    Parameters
    ----------
    scenario
        A scenario (or its name); None or ``"base"``: the base twin.
    at
        The moment read (an edit's features hold at it); the scenario's ``base_at`` by
        default.
    url
        Database URL; the configured one by default.

    Yields
    ------
    Scenario or None
        The scenario, as read from the store when the block began.

    Raises
    ------
    ScenarioNotFoundError
        If no scenario has that name.
    """
    if scenario is None or scenario == "base":
        with overlay.entered(None):
            yield None
        return
    found = get(scenario, url=url) if isinstance(scenario, str) else scenario
    with overlay.entered(found.overlay(_moment(at, "at"))):
        yield found


def active() -> Overlay | None:
    """Return the scenario in force (None: the base); see :func:`layers.overlay.active`."""
    return overlay.active()
