"""Alerts over the live feeds: rules, a lifecycle, one open alert per rule and datastream.

A rule (``live_alert_rules``, migration 0009) watches one datastream, or every datastream of an
observed property, and is one of three kinds:

``threshold``
    The result is ``above`` or ``below`` a number (or ``equals`` a value: a category such as a
    camera's ``offline``) for at least ``duration_s``. With hysteresis: the alert clears only
    once the result is back past ``clear`` (the threshold itself by default) for
    ``clear_duration_s``; a result between the two neither raises nor clears.
``rate``
    The change per minute between consecutive readings (or, with ``window_s``, from the oldest
    reading of the window to the newest) exceeds ``limit_per_min``, in the ``direction``
    ``rise``, ``fall`` or ``any``; it clears once the rate is back within ``clear_per_min``
    (the limit by default) for ``clear_duration_s``.
``no_data``
    No observation for ``minutes``: evaluated by :meth:`AlertRules.tick`, since no reading
    arrives; the next reading resolves it.

:class:`AlertRules` is a processor of :class:`twin.live.feed.Feed`: it evaluates the rules on
each stored batch, in phenomenon-time order. A duration or a hysteresis needs the readings
before the batch: the state of each rule and datastream is kept in memory and, when unknown
(a restart, a batch another process stored in between), recovered from ``sta_observations``
by replaying the readings of the last ``duration`` before the batch. A reading older than
the newest one already evaluated is stored but not evaluated.

An alert is raised into ``live_alerts`` at most once while open: the partial unique index on
``(rule_id, datastream_id)`` for the states other than ``resolved`` makes a repeated breach,
from this process or another, change nothing. The lifecycle is ``raised`` ->
``acknowledged`` (:func:`acknowledge`) -> ``resolved`` (the condition clears, or
:func:`resolve` by hand); ``raised`` -> ``resolved`` directly too. Resolving by hand an alert
whose condition still holds raises a new one at the next breaching reading: acknowledge it
to keep it quiet.

Each alert is linked to its asset (the layer and feature the datastream's Thing is) and
carries its impact on the one map, computed once when it is raised (:func:`impact_of`):

- a pressure drop on a pipe or pipe node: the pipe's isolation plan (valves to close, nodes,
  hydrants and buildings without supply; :meth:`routing.traces.Utilities.isolate`);
- a dead feeder (current below a threshold on a power line or node): the outage trace of
  that element out of service and its cascade (:meth:`routing.traces.Utilities.outage`);
- a camera's status (or silence): the road coverage lost (:func:`layers.cameras.camera_coverage`);
- a high water level (a flood gauge on a road, a district or at a point): the roads to close
  nearby, within :data:`FLOOD_CLOSE_M` (the ``flood`` incident rule), and which of them the
  closures layer already closes (:func:`routing.closures.closed_by_layer`).

An impact that cannot be computed is ``{"error": reason}``; the alert is raised all the same.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import psycopg
import shapely
from psycopg import sql
from psycopg.types.json import Jsonb

from layers.cameras import camera_coverage
from layers.catalog import LAYERS
from layers.database import cursor, database_url, get_engine
from layers.errors import ParameterError
from layers.observations import CATEGORY, TRUTH, StoredObservation, iso
from layers.onemap import along, around, within
from layers.queries import read_layer
from layers.settings import get_settings
from routing.closures import closed_by_layer
from routing.traces import Outage, Utilities
from twin.incidents import KINDS as INCIDENT_KINDS
from twin.live.feed import Event
from twin.live.registry import PROPERTIES, Datastream, datastreams

log = logging.getLogger(__name__)

#: Rule kinds (the ``kind`` check of ``live_alert_rules``).
KINDS = ("threshold", "rate", "no_data")
#: Alert severities, least to most severe.
SEVERITIES = ("info", "warning", "critical")
#: Alert states; ``open`` in :func:`alerts` means raised or acknowledged.
STATES = ("raised", "acknowledged", "resolved")
#: Longest duration, window or silence a rule may ask for (s): the state is recovered from the
#: stored observations over that long, which the retention bounds anyway.
MAX_DURATION_S = 7 * 86_400.0
#: Most alerts :func:`alerts` returns at once.
MAX_LIMIT = 1000
#: Most ids an impact lists one by one (its ``summary`` counts them all).
MAX_LISTED = 500
#: Roads within this distance of a flooded gauge are proposed for closure (m): the ``flood``
#: incident rule's closure distance (:data:`twin.incidents.KINDS`).
FLOOD_CLOSE_M = INCIDENT_KINDS["flood"].close_m
#: A road piece shorter than this inside a camera's lost view is not listed (m).
MIN_ROAD_PIECE_M = 0.5

_RAISE_DIRECTIONS = ("rise", "fall", "any")
_PARAMS: dict[str, tuple[str, ...]] = {
    "threshold": ("above", "below", "equals", "duration_s", "clear", "clear_duration_s"),
    "rate": (
        "limit_per_min",
        "direction",
        "window_s",
        "duration_s",
        "clear_per_min",
        "clear_duration_s",
    ),
    "no_data": ("minutes",),
}


class AlertRuleError(ParameterError):
    """A rule that cannot be stored as given; ``parameter`` names the field at fault."""


class AlertStateError(ParameterError):
    """A lifecycle step the alert's state does not allow (acknowledging a resolved alert)."""


class UnknownAlertError(ParameterError, LookupError):
    """No alert, or no rule, has the id given."""


# --- rules -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """An alert rule as stored.

    Attributes
    ----------
    id
        The rule's id.
    name
        Its name, unique in the store.
    kind
        ``threshold``, ``rate`` or ``no_data``.
    datastream_id
        The datastream it watches, or None when it watches every datastream of a property.
    observed_property
        The observed property whose datastreams it watches, or None.
    params
        The kind's parameters, checked and with their defaults filled in.
    severity
        ``info``, ``warning`` or ``critical``.
    enabled
        Whether it is evaluated.
    created_at
        When it was stored (UTC).
    """

    id: int
    name: str
    kind: str
    datastream_id: int | None
    observed_property: str | None
    params: dict[str, Any]
    severity: str
    enabled: bool
    created_at: datetime

    def to_json(self) -> dict[str, Any]:
        """Return the rule as JSON (the API's encoding).

        Returns
        -------
        dict
            Every attribute; ``created_at`` in ISO 8601 UTC.
        """
        return {
            "id": self.id,
            "name": self.name,
            "kind": self.kind,
            "datastream_id": self.datastream_id,
            "observed_property": self.observed_property,
            "params": dict(self.params),
            "severity": self.severity,
            "enabled": self.enabled,
            "created_at": iso(self.created_at),
        }

    def applies_to(self, stream: Datastream) -> bool:
        """Return whether the rule watches a datastream.

        Parameters
        ----------
        stream
            The datastream.

        Returns
        -------
        bool
            True for its own datastream, or any datastream of its observed property.
        """
        if self.datastream_id is not None:
            return self.datastream_id == stream.id
        return self.observed_property == stream.observed_property


#: The rules' columns, in the order :func:`_rule` reads them.
_RULES = (
    "SELECT id, name, kind, datastream_id, observed_property, params, severity, enabled, "
    "created_at FROM live_alert_rules"
)


def _rule(row: Sequence[Any]) -> Rule:
    return Rule(
        id=int(row[0]),
        name=str(row[1]),
        kind=str(row[2]),
        datastream_id=None if row[3] is None else int(row[3]),
        observed_property=row[4],
        params=dict(row[5] or {}),
        severity=str(row[6]),
        enabled=bool(row[7]),
        created_at=row[8],
    )


def add_rule(
    *,
    name: str,
    kind: str,
    datastream_id: int | None = None,
    observed_property: str | None = None,
    params: Mapping[str, Any] | None = None,
    severity: str = "warning",
    enabled: bool = True,
    url: str | None = None,
) -> Rule:
    """Check and store an alert rule.

    Parameters
    ----------
    name
        Unique name (1 to 200 characters).
    kind
        ``threshold``, ``rate`` or ``no_data``.
    datastream_id
        The datastream to watch; give this or ``observed_property``.
    observed_property
        Watch every datastream of this observed property (``pressure``, ``current``, …), those
        registered later included.
    params
        The kind's parameters (durations in s, rates per minute, in the datastream's unit):

        - threshold: one of ``above``, ``below`` (numbers) or ``equals`` (any value);
          ``duration_s`` (0); ``clear`` (the threshold; for ``equals``, any other value);
          ``clear_duration_s`` (0);
        - rate: ``limit_per_min`` (> 0); ``direction`` (``any``, ``rise`` or ``fall``);
          ``window_s`` (none: consecutive readings); ``duration_s`` (0);
          ``clear_per_min`` (the limit); ``clear_duration_s`` (0);
        - no_data: ``minutes`` (> 0).
    severity
        ``info``, ``warning`` or ``critical``.
    enabled
        Whether it is evaluated.
    url
        Database URL; the configured one by default.

    Returns
    -------
    Rule
        The rule as stored, with its id and its parameters' defaults.

    Raises
    ------
    AlertRuleError
        If the name is empty or taken, the kind or severity unknown, a parameter missing,
        unknown, of the wrong type or out of range, the datastream or property unknown, or
        a numeric rule is given a datastream of categories or truth values. ``parameter``
        names the field (``params.duration_s``, ``datastream_id`` …).
    """
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise AlertRuleError("name must be a text of 1 to 200 characters", parameter="name")
    if kind not in KINDS:
        raise AlertRuleError(
            f"unknown rule kind {kind!r}; known: {', '.join(KINDS)}", parameter="kind"
        )
    if severity not in SEVERITIES:
        raise AlertRuleError(
            f"unknown severity {severity!r}; known: {', '.join(SEVERITIES)}",
            parameter="severity",
        )
    if not isinstance(enabled, bool):
        raise AlertRuleError("enabled must be true or false", parameter="enabled")
    if (datastream_id is None) == (observed_property is None):
        raise AlertRuleError(
            "give a datastream_id or an observed_property (one of them)",
            parameter="datastream_id",
        )
    checked = check_params(kind, params)
    with cursor(url) as cur:
        if datastream_id is not None:
            if isinstance(datastream_id, bool) or not isinstance(datastream_id, int):
                raise AlertRuleError("datastream_id must be an integer", parameter="datastream_id")
            cur.execute(
                "SELECT observation_type FROM sta_datastreams WHERE id = %s", (datastream_id,)
            )
            found = cur.fetchone()
            if found is None:
                raise AlertRuleError(
                    f"Datastream {datastream_id} does not exist", parameter="datastream_id"
                )
            _check_type(kind, checked, str(found[0]))
        else:
            cur.execute(
                "SELECT 1 FROM sta_observed_properties WHERE name = %s", (observed_property,)
            )
            if observed_property not in PROPERTIES and cur.fetchone() is None:
                known = ", ".join(sorted(PROPERTIES))
                raise AlertRuleError(
                    f"unknown observed property {observed_property!r}; known: {known} and "
                    "those of the registered datastreams",
                    parameter="observed_property",
                )
    with _writing(url) as cur:
        cur.execute(
            "INSERT INTO live_alert_rules (name, kind, datastream_id, observed_property, "
            "params, severity, enabled) VALUES (%s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (name) DO NOTHING RETURNING id, name, kind, datastream_id, "
            "observed_property, params, severity, enabled, created_at",
            (name, kind, datastream_id, observed_property, Jsonb(checked), severity, enabled),
        )
        row = cur.fetchone()
    if row is None:
        raise AlertRuleError(f"a rule named {name!r} exists already", parameter="name")
    return _rule(row)


def check_params(kind: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Check a rule's parameters and fill in their defaults.

    Parameters
    ----------
    kind
        ``threshold``, ``rate`` or ``no_data``.
    params
        The parameters (see :func:`add_rule`).

    Returns
    -------
    dict
        The parameters with every default set (durations as float seconds).

    Raises
    ------
    AlertRuleError
        If a parameter is missing, unknown, not a finite number where one is needed,
        negative, or a ``clear`` value lies on the wrong side of its threshold; ``parameter``
        is ``params.<name>``.
    """
    if kind not in KINDS:
        raise AlertRuleError(
            f"unknown rule kind {kind!r}; known: {', '.join(KINDS)}", parameter="kind"
        )
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        raise AlertRuleError("params must be a JSON object", parameter="params")
    unknown = sorted(set(params) - set(_PARAMS[kind]))
    if unknown:
        raise AlertRuleError(
            f"unknown parameter {unknown[0]!r} of a {kind} rule; known: {', '.join(_PARAMS[kind])}",
            parameter=f"params.{unknown[0]}",
        )
    if kind == "no_data":
        return {"minutes": _number(params, "minutes", required=True, positive=True, cap_s=60)}
    if kind == "rate":
        limit = _number(params, "limit_per_min", required=True, positive=True)
        assert limit is not None
        direction = params.get("direction", "any")
        if direction not in _RAISE_DIRECTIONS:
            raise AlertRuleError(
                f"direction must be one of {', '.join(_RAISE_DIRECTIONS)}, not {direction!r}",
                parameter="params.direction",
            )
        clear = _number(params, "clear_per_min", minimum=0.0)
        if clear is not None and clear > limit:
            raise AlertRuleError(
                f"clear_per_min ({clear:g}) must not exceed limit_per_min ({limit:g})",
                parameter="params.clear_per_min",
            )
        return {
            "limit_per_min": limit,
            "direction": direction,
            "window_s": _number(params, "window_s", positive=True, cap_s=1),
            "duration_s": _number(params, "duration_s", minimum=0.0, cap_s=1) or 0.0,
            "clear_per_min": limit if clear is None else clear,
            "clear_duration_s": _number(params, "clear_duration_s", minimum=0.0, cap_s=1) or 0.0,
        }
    given = [k for k in ("above", "below", "equals") if k in params]
    if len(given) != 1:
        raise AlertRuleError(
            "a threshold rule takes one of above, below or equals"
            + (f", not {' and '.join(given)}" if given else ""),
            parameter=f"params.{given[1]}" if len(given) > 1 else "params.above",
        )
    out: dict[str, Any] = {
        "duration_s": _number(params, "duration_s", minimum=0.0, cap_s=1) or 0.0,
        "clear_duration_s": _number(params, "clear_duration_s", minimum=0.0, cap_s=1) or 0.0,
    }
    side = given[0]
    if side == "equals":
        value = params["equals"]
        if value is None or isinstance(value, dict | list):
            raise AlertRuleError(
                "equals must be a number, a text or true/false", parameter="params.equals"
            )
        clear = params.get("clear")
        if clear is not None and (isinstance(clear, dict | list) or clear == value):
            raise AlertRuleError(
                "clear must be a number, a text or true/false other than equals",
                parameter="params.clear",
            )
        out |= {"equals": value, "clear": clear}
        return out
    threshold = _number(params, side, required=True)
    assert threshold is not None
    clear_value = _number(params, "clear")
    if clear_value is None:
        clear_value = threshold
    if (side == "above" and clear_value > threshold) or (
        side == "below" and clear_value < threshold
    ):
        relation = "at most" if side == "above" else "at least"
        raise AlertRuleError(
            f"clear ({clear_value:g}) must be {relation} {side} ({threshold:g}): an alert clears "
            "on the safe side of its threshold",
            parameter="params.clear",
        )
    out |= {side: threshold, "clear": clear_value}
    return out


def _number(
    params: Mapping[str, Any],
    key: str,
    *,
    required: bool = False,
    positive: bool = False,
    minimum: float | None = None,
    cap_s: float | None = None,
) -> float | None:
    """Read a finite number; ``cap_s`` is the key's unit in seconds, for the longest allowed."""
    if key not in params or params[key] is None:
        if required:
            raise AlertRuleError(f"params.{key} is required", parameter=f"params.{key}")
        return None
    value = params[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise AlertRuleError(
            f"params.{key} must be a finite number, not {value!r}", parameter=f"params.{key}"
        )
    number = float(value)
    if positive and number <= 0:
        raise AlertRuleError(
            f"params.{key} must be greater than 0, not {value!r}", parameter=f"params.{key}"
        )
    if minimum is not None and number < minimum:
        raise AlertRuleError(
            f"params.{key} must be {minimum:g} or more, not {value!r}", parameter=f"params.{key}"
        )
    if cap_s is not None and number * cap_s > MAX_DURATION_S:
        raise AlertRuleError(
            f"params.{key} must not exceed {MAX_DURATION_S / cap_s:g}", parameter=f"params.{key}"
        )
    return number


def _check_type(kind: str, params: Mapping[str, Any], observation_type: str) -> None:
    """Refuse a numeric rule on a datastream of categories or truth values, and the reverse."""
    numeric = kind == "rate" or "above" in params or "below" in params
    if numeric and observation_type in (CATEGORY, TRUTH):
        key = "limit_per_min" if kind == "rate" else ("above" if "above" in params else "below")
        raise AlertRuleError(
            f"a {kind} rule on numbers cannot watch a datastream of "
            f"{observation_type.rsplit('_', 1)[-1]} results",
            parameter=f"params.{key}",
        )
    if kind == "threshold" and "equals" in params:
        value = params["equals"]
        wrong = (observation_type == CATEGORY and not isinstance(value, str)) or (
            observation_type == TRUTH and not isinstance(value, bool)
        )
        if wrong:
            raise AlertRuleError(
                f"equals {value!r} is never the result of a datastream of "
                f"{observation_type.rsplit('_', 1)[-1]} results",
                parameter="params.equals",
            )


def rules(*, enabled: bool | None = None, url: str | None = None) -> list[Rule]:
    """Return the stored rules, by id.

    Parameters
    ----------
    enabled
        Only the enabled (True) or disabled (False) ones; all by default.
    url
        Database URL; the configured one by default.

    Returns
    -------
    list of Rule
        The rules.
    """
    with cursor(url) as cur:
        cur.execute(
            _RULES + " WHERE %(enabled)s::boolean IS NULL OR enabled = %(enabled)s ORDER BY id",
            {"enabled": enabled},
        )
        return [_rule(row) for row in cur.fetchall()]


def get_rule(rule_id: int, *, url: str | None = None) -> Rule:
    """Return one rule.

    Parameters
    ----------
    rule_id
        Its id.
    url
        Database URL; the configured one by default.

    Returns
    -------
    Rule
        The rule.

    Raises
    ------
    UnknownAlertError
        If no rule has that id (``parameter`` is ``rule_id``).
    """
    with cursor(url) as cur:
        cur.execute(_RULES + " WHERE id = %s", (rule_id,))
        row = cur.fetchone()
    if row is None:
        raise UnknownAlertError(f"no alert rule {rule_id}", parameter="rule_id")
    return _rule(row)


def enable_rule(rule_id: int, *, enabled: bool, url: str | None = None) -> Rule:
    """Turn a rule's evaluation on or off (its open alerts stay as they are).

    Parameters
    ----------
    rule_id
        Its id.
    enabled
        Evaluate it (True) or not.
    url
        Database URL; the configured one by default.

    Returns
    -------
    Rule
        The rule as stored now.

    Raises
    ------
    UnknownAlertError
        If no rule has that id.
    AlertRuleError
        If ``enabled`` is not a boolean.
    """
    if not isinstance(enabled, bool):
        raise AlertRuleError("enabled must be true or false", parameter="enabled")
    with _writing(url) as cur:
        cur.execute(
            "UPDATE live_alert_rules SET enabled = %s WHERE id = %s RETURNING id, name, kind, "
            "datastream_id, observed_property, params, severity, enabled, created_at",
            (enabled, rule_id),
        )
        row = cur.fetchone()
    if row is None:
        raise UnknownAlertError(f"no alert rule {rule_id}", parameter="rule_id")
    return _rule(row)


def delete_rule(rule_id: int, *, url: str | None = None) -> None:
    """Delete a rule that never raised an alert (disable one that did: its alerts stay).

    Parameters
    ----------
    rule_id
        Its id.
    url
        Database URL; the configured one by default.

    Raises
    ------
    UnknownAlertError
        If no rule has that id (``parameter`` is ``rule_id``).
    AlertStateError
        If the rule has raised alerts: deleting it would erase them and their history.
    """
    with _writing(url) as cur:
        cur.execute(
            "SELECT count(*) FILTER (WHERE state <> 'resolved'), count(*) FROM live_alerts "
            "WHERE rule_id = %s",
            (rule_id,),
        )
        found = cur.fetchone()
        open_count, total = (int(found[0]), int(found[1])) if found else (0, 0)
        if total:
            # deleting would erase the alerts' history with the rule (and open ones unseen)
            raise AlertStateError(
                f"alert rule {rule_id} has raised {total} alert(s), {open_count} open: "
                "disable it instead (its alerts and their history stay)",
                parameter="rule_id",
            )
        cur.execute("DELETE FROM live_alert_rules WHERE id = %s RETURNING id", (rule_id,))
        if cur.fetchone() is None:
            raise UnknownAlertError(f"no alert rule {rule_id}", parameter="rule_id")


# --- alerts and their lifecycle --------------------------------------------------------------

_ALERTS = """
SELECT a.id, a.state, a.severity, a.message, a.value, a.raised_at, a.acknowledged_at,
       a.acknowledged_by, a.resolved_at, a.layer, a.feature_id, a.impact, a.rule_id, r.name,
       r.kind, a.datastream_id, d.name, p.name, ST_X(loc.geom), ST_Y(loc.geom), a.resolved_by
FROM live_alerts a
JOIN live_alert_rules r ON r.id = a.rule_id
JOIN sta_datastreams d ON d.id = a.datastream_id
JOIN sta_observed_properties p ON p.id = d.observed_property_id
LEFT JOIN LATERAL (
    SELECT ST_PointOnSurface(l.geom) AS geom
    FROM sta_thing_locations tl JOIN sta_locations l ON l.id = tl.location_id
    WHERE tl.thing_id = d.thing_id ORDER BY l.id DESC LIMIT 1
) loc ON true
WHERE (%(ids)s::bigint[] IS NULL OR a.id = ANY(%(ids)s))
  AND (%(states)s::text[] IS NULL OR a.state = ANY(%(states)s))
  AND (%(since)s::timestamptz IS NULL OR a.raised_at >= %(since)s
       OR a.acknowledged_at >= %(since)s OR a.resolved_at >= %(since)s)
  AND (%(datastream)s::bigint IS NULL OR a.datastream_id = %(datastream)s)
ORDER BY a.raised_at DESC, a.id DESC
LIMIT %(limit)s
"""


def alerts(
    *,
    state: str | None = None,
    since: datetime | str | None = None,
    datastream: int | None = None,
    limit: int = 100,
    url: str | None = None,
) -> list[dict[str, Any]]:
    """Return alerts, newest raised first.

    Parameters
    ----------
    state
        ``raised``, ``acknowledged``, ``resolved``, or ``open`` (raised or acknowledged);
        every state by default.
    since
        Only alerts raised, acknowledged or resolved at or after this moment (ISO 8601;
        without an offset it is UTC): what changed since a client last looked.
    datastream
        Only the alerts of this datastream.
    limit
        At most this many (1 to :data:`MAX_LIMIT`).
    url
        Database URL; the configured one by default.

    Returns
    -------
    list of dict
        Per alert: ``id``, ``state``, ``severity``, ``message``, ``value``, ``rule`` (its
        name), ``rule_id``, ``kind``, ``datastream`` (id), ``datastream_name``,
        ``observed_property``, ``layer`` and ``feature_id`` (its asset), ``lon``/``lat``
        (EPSG:4326: the Thing's Location, else the asset's point), ``raised_at``,
        ``acknowledged_at``, ``acknowledged_by``, ``resolved_at`` (ISO 8601 UTC) and
        ``impact``.

    Raises
    ------
    ParameterError
        If ``state``, ``since``, ``datastream`` or ``limit`` cannot be honoured
        (``parameter`` names it).
    """
    if state is not None and state not in (*STATES, "open"):
        raise ParameterError(
            f"unknown alert state {state!r}; known: {', '.join(STATES)}, open", parameter="state"
        )
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise ParameterError(
            f"limit must be a whole number from 1 to {MAX_LIMIT}, not {limit!r}",
            parameter="limit",
        )
    if datastream is not None and (isinstance(datastream, bool) or not isinstance(datastream, int)):
        raise ParameterError("datastream must be an integer id", parameter="datastream")
    states = None if state is None else (["raised", "acknowledged"] if state == "open" else [state])
    return _alerts(
        database_url(url),
        states=states,
        since=_moment(since, "since"),
        datastream=datastream,
        limit=limit,
    )


def get_alert(alert_id: int, *, url: str | None = None) -> dict[str, Any]:
    """Return one alert (the shape of :func:`alerts`).

    Parameters
    ----------
    alert_id
        Its id.
    url
        Database URL; the configured one by default.

    Returns
    -------
    dict
        The alert.

    Raises
    ------
    UnknownAlertError
        If no alert has that id (``parameter`` is ``alert_id``).
    ParameterError
        If ``alert_id`` is not an integer.
    """
    if isinstance(alert_id, bool) or not isinstance(alert_id, int):
        raise ParameterError("alert_id must be an integer", parameter="alert_id")
    found = _alerts(database_url(url), ids=[alert_id])
    if not found:
        raise UnknownAlertError(f"no alert {alert_id}", parameter="alert_id")
    return found[0]


def acknowledge(alert_id: int, *, by: str, url: str | None = None) -> dict[str, Any]:
    """Acknowledge a raised alert: someone is on it (raised -> acknowledged).

    Parameters
    ----------
    alert_id
        The alert.
    by
        Who acknowledges it (1 to 200 characters).
    url
        Database URL; the configured one by default.

    Returns
    -------
    dict
        The push event of the change: ``{"type": "alert", ...}`` with the alert as
        :func:`alerts` gives it.

    Raises
    ------
    UnknownAlertError
        If no alert has that id.
    AlertStateError
        If the alert is acknowledged already or resolved (``parameter`` is ``state``).
    ParameterError
        If ``by`` is empty (``parameter`` is ``by``).
    """
    return _step(alert_id, by=by, to="acknowledged", url=url)


def resolve(alert_id: int, *, by: str, url: str | None = None) -> dict[str, Any]:
    """Resolve an open alert by hand (raised or acknowledged -> resolved).

    Parameters
    ----------
    alert_id
        The alert.
    by
        Who resolves it (1 to 200 characters); it is in the returned event (the store keeps
        who acknowledged, not who resolved).
    url
        Database URL; the configured one by default.

    Returns
    -------
    dict
        The push event of the change, with ``resolved_by``.

    Raises
    ------
    UnknownAlertError
        If no alert has that id.
    AlertStateError
        If the alert is resolved already.
    ParameterError
        If ``by`` is empty.
    """
    return _step(alert_id, by=by, to="resolved", url=url)


def _step(alert_id: int, *, by: str, to: str, url: str | None) -> dict[str, Any]:
    if not isinstance(by, str) or not by.strip() or len(by) > 200:
        raise ParameterError("by must name who acts (1 to 200 characters)", parameter="by")
    if isinstance(alert_id, bool) or not isinstance(alert_id, int):
        raise ParameterError("alert_id must be an integer", parameter="alert_id")
    resolved = database_url(url)
    with _writing(resolved) as cur:
        if to == "acknowledged":
            cur.execute(
                "UPDATE live_alerts SET state = 'acknowledged', acknowledged_at = now(), "
                "acknowledged_by = %s WHERE id = %s AND state = 'raised' RETURNING id",
                (by, alert_id),
            )
        else:
            cur.execute(
                "UPDATE live_alerts SET state = 'resolved', resolved_at = now(), resolved_by = %s "
                "WHERE id = %s AND state <> 'resolved' RETURNING id",
                (by, alert_id),
            )
        changed = cur.fetchone() is not None
        if not changed:
            cur.execute(
                "SELECT state, acknowledged_by, acknowledged_at, resolved_at FROM live_alerts "
                "WHERE id = %s",
                (alert_id,),
            )
            row = cur.fetchone()
    if not changed:
        if row is None:
            raise UnknownAlertError(f"no alert {alert_id}", parameter="alert_id")
        now_state, ack_by, ack_at, resolved_at = row
        if now_state == "resolved":
            detail = f"it was resolved at {iso(resolved_at)}"
        else:
            detail = f"it was acknowledged by {ack_by} at {iso(ack_at)}"
        verb = "acknowledged" if to == "acknowledged" else "resolved"
        raise AlertStateError(f"alert {alert_id} cannot be {verb}: {detail}", parameter="state")
    event = _event(resolved, alert_id)
    assert event is not None
    return event


def _alerts(
    url: str,
    *,
    ids: Sequence[int] | None = None,
    states: Sequence[str] | None = None,
    since: datetime | None = None,
    datastream: int | None = None,
    limit: int = MAX_LIMIT,
) -> list[dict[str, Any]]:
    params = {
        "ids": None if ids is None else list(ids),
        "states": None if states is None else list(states),
        "since": since,
        "datastream": datastream,
        "limit": limit,
    }
    with cursor(url) as cur:
        cur.execute(_ALERTS, params)
        rows = cur.fetchall()
    out = []
    for row in rows:
        out.append(
            {
                "id": int(row[0]),
                "state": row[1],
                "severity": row[2],
                "message": row[3],
                "value": row[4],
                "rule": row[13],
                "rule_id": int(row[12]),
                "kind": row[14],
                "datastream": int(row[15]),
                "datastream_name": row[16],
                "observed_property": row[17],
                "layer": row[9],
                "feature_id": row[10],
                "lon": row[18],
                "lat": row[19],
                "raised_at": iso(row[5]),
                "acknowledged_at": iso(row[6]) if row[6] else None,
                "acknowledged_by": row[7],
                "resolved_at": iso(row[8]) if row[8] else None,
                "resolved_by": row[20],
                "impact": row[11],
            }
        )
    # an asset without a Location of its own sits at its feature
    missing = {(a["layer"], a["feature_id"]) for a in out if a["lon"] is None and a["layer"]}
    if missing:
        points = _feature_points(url, missing)
        for alert in out:
            point = points.get((alert["layer"], alert["feature_id"]))
            if alert["lon"] is None and point is not None:
                alert["lon"], alert["lat"] = point
    return out


def _event(url: str, alert_id: int) -> Event | None:
    found = _alerts(url, ids=[alert_id])
    return {"type": "alert", **found[0]} if found else None


def _moment(value: datetime | str | None, name: str) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        text = value
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            raise ParameterError(
                f"{name} must be an ISO 8601 time, not {text[:40]!r}", parameter=name
            ) from None
    if not isinstance(value, datetime):
        raise ParameterError(f"{name} must be an ISO 8601 time", parameter=name)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


# --- evaluation ------------------------------------------------------------------------------

_OPEN = """
SELECT rule_id, datastream_id FROM live_alerts
WHERE state <> 'resolved' AND datastream_id = ANY(%s)
"""

_RULES_FOR = """
SELECT id, name, kind, datastream_id, observed_property, params, severity, enabled, created_at
FROM live_alert_rules
WHERE enabled AND (datastream_id = ANY(%(ids)s) OR observed_property = ANY(%(properties)s))
ORDER BY id
"""

# The newest stored reading of each datastream that is not in the batch being evaluated.
_BEFORE = """
SELECT w.ds, (
    SELECT o.phenomenon_time FROM sta_observations o
    WHERE o.datastream_id = w.ds AND o.id NOT IN (SELECT unnest(%(batch)s::bigint[]))
    ORDER BY o.phenomenon_time DESC LIMIT 1)
FROM unnest(%(ds)s::bigint[]) AS w(ds)
"""

# Readings of each datastream from the last one at or before ``since`` up to ``until``.
_HISTORY = """
SELECT w.ds, o.phenomenon_time, COALESCE(to_jsonb(o.result), o.result_json)
FROM unnest(%(ds)s::bigint[], %(since)s::timestamptz[], %(until)s::timestamptz[])
    AS w(ds, since, until)
CROSS JOIN LATERAL (
    SELECT phenomenon_time, result, result_json FROM sta_observations h
    WHERE h.datastream_id = w.ds AND h.phenomenon_time <= w.until
      AND h.phenomenon_time >= COALESCE((
          SELECT b.phenomenon_time FROM sta_observations b
          WHERE b.datastream_id = w.ds AND b.phenomenon_time <= w.since
          ORDER BY b.phenomenon_time DESC LIMIT 1), w.since)
) o
ORDER BY w.ds, o.phenomenon_time
"""

_RAISE = """
INSERT INTO live_alerts (rule_id, datastream_id, severity, message, value, raised_at, layer,
                         feature_id)
VALUES (%(rule)s, %(ds)s, %(severity)s, %(message)s, %(value)s, %(at)s, %(layer)s,
        %(feature_id)s)
ON CONFLICT (rule_id, datastream_id) WHERE state <> 'resolved' DO NOTHING
RETURNING id
"""

_CLEAR = """
UPDATE live_alerts SET state = 'resolved', resolved_at = GREATEST(%(at)s, raised_at),
    resolved_by = 'rule'
WHERE rule_id = %(rule)s AND datastream_id = %(ds)s AND state <> 'resolved'
RETURNING id
"""

_SILENCE = """
SELECT r.id, d.id, l.phenomenon_time
FROM live_alert_rules r
JOIN sta_datastreams d ON d.id = r.datastream_id OR (
    r.datastream_id IS NULL AND d.observed_property_id IN (
        SELECT p.id FROM sta_observed_properties p WHERE p.name = r.observed_property))
LEFT JOIN sta_latest l ON l.datastream_id = d.id
WHERE r.enabled AND r.kind = 'no_data'
"""


@dataclass
class _Track:
    """What a rule knows of one datastream's recent readings (its streaks)."""

    stamp: tuple[Any, ...]
    last_time: datetime | None = None
    last_value: Any = None
    last_rate: float | None = None
    breach_since: datetime | None = None
    clear_since: datetime | None = None
    recent: deque[tuple[datetime, float]] = field(default_factory=deque)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _same(a: Any, b: Any) -> bool:
    """Return whether two results are equal: numbers by value, others also by type (1 != true)."""
    if _is_number(a) and _is_number(b):
        return bool(a == b)
    return type(a) is type(b) and a == b


def _classify(rule: Rule, track: _Track, t: datetime, value: Any) -> str | None:
    """Return ``breach``, ``clear``, ``between`` for a reading, or None if it says nothing."""
    p = rule.params
    if rule.kind == "threshold":
        if "equals" in p:
            if _same(value, p["equals"]):
                return "breach"
            if p.get("clear") is None or _same(value, p["clear"]):
                return "clear"
            return "between"
        if not _is_number(value):
            return None
        if "above" in p:
            return "breach" if value > p["above"] else "clear" if value <= p["clear"] else "between"
        return "breach" if value < p["below"] else "clear" if value >= p["clear"] else "between"
    if rule.kind != "rate" or not _is_number(value):
        return None
    x = float(value)
    window = p.get("window_s")
    recent = track.recent
    if window:
        while recent and recent[0][0] < t - timedelta(seconds=window):
            recent.popleft()
        reference = recent[0] if recent else None
    else:
        reference = recent[-1] if recent else None
        recent.clear()
    recent.append((t, x))
    if reference is None or reference[0] >= t:
        return None
    rate = (x - reference[1]) / ((t - reference[0]).total_seconds() / 60.0)
    track.last_rate = rate
    signed = {"rise": rate, "fall": -rate}.get(p["direction"], abs(rate))
    if signed > p["limit_per_min"]:
        return "breach"
    return "clear" if signed <= p["clear_per_min"] else "between"


def _step_track(rule: Rule, track: _Track, t: datetime, value: Any) -> None:
    """Advance a track by one reading (in time order)."""
    verdict = _classify(rule, track, t, value)
    track.last_time = t
    if verdict is None:
        return
    track.last_value = value
    if verdict == "breach":
        track.breach_since = track.breach_since or t
        track.clear_since = None
    elif verdict == "clear":
        track.clear_since = track.clear_since or t
        track.breach_since = None
    else:
        track.breach_since = track.clear_since = None


def _due(rule: Rule, track: _Track, at: datetime, *, is_open: bool) -> str | None:
    """Return ``raise`` or ``resolve`` when a streak has lasted long enough at ``at``."""
    p = rule.params
    breach, clear = track.breach_since, track.clear_since
    if not is_open and breach is not None and (at - breach).total_seconds() >= p["duration_s"]:
        return "raise"
    if is_open and clear is not None and (at - clear).total_seconds() >= p["clear_duration_s"]:
        return "resolve"
    return None


def _lookback_s(rule: Rule) -> float:
    p = rule.params
    return float(max(p["duration_s"], p["clear_duration_s"]) + (p.get("window_s") or 0.0))


def _stamp(rule: Rule) -> tuple[Any, ...]:
    return (rule.created_at, repr(sorted(rule.params.items())))


class AlertRules:
    """The alert rules as a feed processor (:class:`twin.live.feed.Processor`).

    It evaluates the enabled rules on every stored batch and raises and resolves alerts;
    :meth:`tick` does what only time does (silences, durations that elapse between
    readings). One instance serves any number of threads; several processes may each run
    one over the same store.

    Parameters
    ----------
    utilities
        The utility networks the impacts are traced on; one shared per store by default.
    """

    def __init__(self, *, utilities: Utilities | None = None):
        self._utilities = utilities
        self._tracks: dict[tuple[str, int, int], _Track] = {}
        self._lock = threading.Lock()

    def observe(self, stored: Sequence[StoredObservation], *, url: str | None) -> list[Event]:
        """Evaluate the rules on a stored batch; raise and resolve alerts.

        Parameters
        ----------
        stored
            Observations just stored (any order, any datastreams).
        url
            Database URL; the configured one when None.

        Returns
        -------
        list of dict
            An ``alert`` event per alert raised or resolved (see :func:`alerts`).
        """
        if not stored:
            return []
        resolved = database_url(url)
        with self._lock:
            return self._observe(stored, resolved)

    def _observe(self, stored: Sequence[StoredObservation], url: str) -> list[Event]:
        by_stream: dict[int, list[StoredObservation]] = {}
        for obs in stored:
            by_stream.setdefault(obs.datastream_id, []).append(obs)
        streams = datastreams(set(by_stream), url=url)
        properties = sorted({s.observed_property for s in streams.values()})
        with cursor(url) as cur:
            cur.execute(_RULES_FOR, {"ids": sorted(streams), "properties": properties})
            found = [_rule(row) for row in cur.fetchall()]
            pairs = [
                (rule, streams[ds])
                for ds in sorted(streams)
                for rule in found
                if rule.applies_to(streams[ds])
            ]
            if not pairs:
                return []
            watched = sorted({stream.id for _, stream in pairs})
            cur.execute(_OPEN, (watched,))
            open_pairs = {(int(r), int(d)) for r, d in cur.fetchall()}
            followed = set(watched)
            batch = [o.id for o in stored if o.datastream_id in followed]
            cur.execute(_BEFORE, {"ds": watched, "batch": batch})
            before: dict[int, datetime | None] = {int(d): t for d, t in cur.fetchall()}
        self._recover(url, [(r, s.id) for r, s in pairs if r.kind != "no_data"], before)
        events: list[Event] = []
        for rule, stream in pairs:
            prev = before.get(stream.id)
            readings = sorted(
                (o for o in by_stream[stream.id] if prev is None or o.phenomenon_time > prev),
                key=lambda o: o.phenomenon_time,
            )
            if not readings:
                continue
            key = (rule.id, stream.id)
            if rule.kind == "no_data":
                if key in open_pairs:
                    event = self._clear(url, rule, stream, readings[0].phenomenon_time)
                    open_pairs.discard(key)
                    events.extend([event] if event else [])
                continue
            track = self._tracks[(url, rule.id, stream.id)]
            for obs in readings:
                _step_track(rule, track, obs.phenomenon_time, obs.result)
                action = _due(rule, track, obs.phenomenon_time, is_open=key in open_pairs)
                if action == "raise":
                    event = self._raise(url, rule, stream, obs.phenomenon_time, track)
                    open_pairs.add(key)
                elif action == "resolve":
                    event = self._clear(url, rule, stream, obs.phenomenon_time)
                    open_pairs.discard(key)
                else:
                    continue
                events.extend([event] if event else [])
        return events

    def tick(self, now: datetime | None = None, *, url: str | None = None) -> list[Event]:
        """Do what time alone does: raise and resolve silences, and durations that elapse.

        A ``no_data`` rule raises for a datastream whose newest observation (by phenomenon
        time; the rule's creation when it has none) is ``minutes`` or more before ``now``, and
        resolves once it is not. A threshold or rate streak this instance follows raises (or
        clears) at ``now`` when its duration has elapsed since it began, the newest reading
        still being in it and not older than ``TWIN_LIVE_STALE_S``.

        Parameters
        ----------
        now
            The clock (timezone-aware); now by default.
        url
            Database URL; the configured one by default.

        Returns
        -------
        list of dict
            An ``alert`` event per alert raised or resolved.
        """
        now = now or datetime.now(UTC)
        if now.tzinfo is None:
            raise ParameterError("now must be timezone-aware", parameter="now")
        resolved = database_url(url)
        with self._lock:
            return self._silences(resolved, now) + self._elapsed(resolved, now)

    def _silences(self, url: str, now: datetime) -> list[Event]:
        with cursor(url) as cur:
            cur.execute(_SILENCE)
            watched = [(int(r), int(d), t) for r, d, t in cur.fetchall()]
            if not watched:
                return []
            cur.execute(_OPEN, (sorted({d for _, d, _ in watched}),))
            open_pairs = {(int(r), int(d)) for r, d in cur.fetchall()}
            cur.execute(
                _RULES + " WHERE id = ANY(%s)",
                (sorted({r for r, _, _ in watched}),),
            )
            by_id = {rule.id: rule for rule in map(_rule, cur.fetchall())}
        streams = datastreams({d for _, d, _ in watched}, url=url)
        events: list[Event] = []
        for rule_id, ds, last in watched:
            rule, stream = by_id.get(rule_id), streams.get(ds)
            if rule is None or stream is None:
                continue
            since = last if last is not None else rule.created_at
            silent = (now - since).total_seconds() >= rule.params["minutes"] * 60.0
            event = None
            if silent and (rule_id, ds) not in open_pairs:
                message = (
                    f"{stream.name}: no observation for {rule.params['minutes']:g} min"
                    + (f" (last at {iso(last)})" if last else " (none yet)")
                    + _asset_text(stream)
                )
                event = self._insert(url, rule, stream, now, None, message)
            elif not silent and (rule_id, ds) in open_pairs:
                event = self._clear(url, rule, stream, now)
            events.extend([event] if event else [])
        return events

    def _elapsed(self, url: str, now: datetime) -> list[Event]:
        followed = [(r, d) for (u, r, d) in self._tracks if u == url]
        if not followed:
            return []
        stale_s = get_settings().live_stale_s
        ids = sorted({d for _, d in followed})
        with cursor(url) as cur:
            cur.execute(
                _RULES + " WHERE enabled AND id = ANY(%s) AND kind <> 'no_data'",
                (sorted({r for r, _ in followed}),),
            )
            by_id = {rule.id: rule for rule in map(_rule, cur.fetchall())}
            cur.execute(
                "SELECT datastream_id, phenomenon_time FROM sta_latest "
                "WHERE datastream_id = ANY(%s)",
                (ids,),
            )
            latest: dict[int, datetime | None] = {int(d): t for d, t in cur.fetchall()}
            cur.execute(_OPEN, (ids,))
            open_pairs = {(int(r), int(d)) for r, d in cur.fetchall()}
        for r, d in followed:
            if r not in by_id:  # deleted, disabled or replaced: forget what it followed
                del self._tracks[(url, r, d)]
        pairs = [(by_id[r], d) for r, d in followed if r in by_id]
        self._recover(url, pairs, latest)
        streams = datastreams({d for _, d in pairs}, url=url)
        events: list[Event] = []
        for rule, ds in pairs:
            track = self._tracks[(url, rule.id, ds)]
            stream = streams.get(ds)
            if stream is None or track.last_time is None:
                continue
            if (now - track.last_time).total_seconds() > stale_s or now < track.last_time:
                continue
            action = _due(rule, track, now, is_open=(rule.id, ds) in open_pairs)
            event = None
            if action == "raise":
                event = self._raise(url, rule, stream, now, track)
            elif action == "resolve":
                event = self._clear(url, rule, stream, now)
            events.extend([event] if event else [])
        return events

    def _recover(
        self, url: str, pairs: Sequence[tuple[Rule, int]], until: Mapping[int, datetime | None]
    ) -> None:
        """Bring each rule's track of a datastream up to ``until``, from the store if need be.

        A track that has not seen exactly the readings up to ``until`` (none yet, or another
        process stored some) is rebuilt by replaying the stored readings of the rule's
        lookback (its durations and window) before ``until``, without acting on them.
        """
        stale: list[tuple[Rule, int]] = []
        for rule, ds in pairs:
            key = (url, rule.id, ds)
            track = self._tracks.get(key)
            newest = until.get(ds)
            if track is not None and track.stamp == _stamp(rule) and track.last_time == newest:
                continue
            self._tracks[key] = _Track(stamp=_stamp(rule))
            if newest is not None:
                stale.append((rule, ds))
        if not stale:
            return
        lookback: dict[int, float] = {}
        for rule, ds in stale:
            lookback[ds] = max(lookback.get(ds, 0.0), _lookback_s(rule))
        ds_ids = sorted(lookback)
        ends = [until[ds] for ds in ds_ids]
        starts = [
            end - timedelta(seconds=lookback[ds]) if end else None
            for ds, end in zip(ds_ids, ends, strict=True)
        ]
        with cursor(url) as cur:
            cur.execute(_HISTORY, {"ds": ds_ids, "since": starts, "until": ends})
            history: dict[int, list[tuple[datetime, Any]]] = {}
            for ds, t, value in cur.fetchall():
                history.setdefault(int(ds), []).append((t, value))
        for rule, ds in stale:
            track = self._tracks[(url, rule.id, ds)]
            for t, value in history.get(ds, []):
                _step_track(rule, track, t, value)
            track.last_time = until[ds]

    def _raise(
        self, url: str, rule: Rule, stream: Datastream, at: datetime, track: _Track
    ) -> Event | None:
        message = _message(rule, stream, track, at)
        return self._insert(url, rule, stream, at, track.last_value, message)

    def _insert(
        self,
        url: str,
        rule: Rule,
        stream: Datastream,
        at: datetime,
        value: Any,
        message: str,
    ) -> Event | None:
        params = {
            "rule": rule.id,
            "ds": stream.id,
            "severity": rule.severity,
            "message": message,
            "value": float(value) if _is_number(value) else None,
            "at": at,
            "layer": stream.layer,
            "feature_id": stream.feature_id,
        }
        try:
            with _writing(url) as cur:
                cur.execute(_RAISE, params)
                row = cur.fetchone()
        except psycopg.errors.ForeignKeyViolation:
            return None  # the rule or the datastream was deleted meanwhile
        if row is None:
            return None  # open already: raised by another process
        alert_id = int(row[0])
        impact = impact_of(rule, stream, url=url, utilities=self._utilities_for(url))
        with _writing(url) as cur:
            cur.execute(
                "UPDATE live_alerts SET impact = %s WHERE id = %s", (Jsonb(impact), alert_id)
            )
        return _event(url, alert_id)

    def _clear(self, url: str, rule: Rule, stream: Datastream, at: datetime) -> Event | None:
        with _writing(url) as cur:
            cur.execute(_CLEAR, {"rule": rule.id, "ds": stream.id, "at": at})
            row = cur.fetchone()
        return None if row is None else _event(url, int(row[0]))

    def _utilities_for(self, url: str) -> Utilities:
        if self._utilities is not None:
            return self._utilities
        return shared_utilities(url)


def _message(rule: Rule, stream: Datastream, track: _Track, at: datetime) -> str:
    p, unit = rule.params, stream.unit
    suffix = f" {unit}" if unit else ""
    value = track.last_value
    shown = f"{value:g}{suffix}" if _is_number(value) else repr(value)
    held = (at - track.breach_since).total_seconds() if track.breach_since else 0.0
    during = f" for {held:g} s" if held else ""
    if rule.kind == "rate":
        rate = track.last_rate or 0.0
        text = (
            f"{stream.name}: changing {rate:+.3g}{suffix}/min "
            f"(limit {p['limit_per_min']:g}{suffix}/min, {p['direction']}){during}"
        )
    elif "equals" in p:
        text = f"{stream.name}: {shown}{during}"
    elif "above" in p:
        text = f"{stream.name}: {shown} above {p['above']:g}{suffix}{during}"
    else:
        text = f"{stream.name}: {shown} below {p['below']:g}{suffix}{during}"
    return text + _asset_text(stream)


def _asset_text(stream: Datastream) -> str:
    return f" on {stream.layer} {stream.feature_id}" if stream.layer else ""


# --- impact on the one map -------------------------------------------------------------------

_UTILITIES: dict[str, Utilities] = {}
_UTILITIES_LOCK = threading.Lock()


def shared_utilities(url: str | None = None) -> Utilities:
    """Return the utility networks of a store, one per store in the process.

    Parameters
    ----------
    url
        Database URL; the configured one by default.

    Returns
    -------
    routing.traces.Utilities
        Built on first use, rebuilt when the network layers change.
    """
    resolved = database_url(url)
    with _UTILITIES_LOCK:
        if resolved not in _UTILITIES:
            _UTILITIES[resolved] = Utilities(resolved)
        return _UTILITIES[resolved]


def impact_of(
    rule: Rule,
    stream: Datastream,
    *,
    url: str | None = None,
    utilities: Utilities | None = None,
) -> dict[str, Any]:
    """Compute what an alert means on the one map, from its rule and its asset.

    Parameters
    ----------
    rule
        The rule that raised it.
    stream
        Its datastream (the asset is its Thing's ``layer`` and ``feature_id``).
    url
        Database URL; the configured one by default.
    utilities
        The utility networks to trace on; :func:`shared_utilities` by default.

    Returns
    -------
    dict
        JSON, with ``kind``:

        - ``isolation`` (pressure falling on ``pipelines`` or ``pipe_nodes``): ``network``,
          ``cause``, ``operate`` (valves to close, nearest first), ``unable``, ``summary``,
          ``nodes``, ``hydrants``, ``buildings``, ``lost_lines`` and ``geometry`` (GeoJSON
          of the pieces without supply, EPSG:4326);
        - ``outage`` (current below a threshold on ``power_lines`` or ``power_nodes``): the
          same members for the element out of service, with ``dark`` (assets the grid no
          longer feeds) and ``water`` (per pipe network, what their dark pumps cut off);
        - ``camera_coverage`` (a camera's ``status`` rule, or its silence): ``camera``,
          ``watching``, ``lost_length_m`` (distinct road length no camera sees any more),
          ``road_ids``, ``districts`` (those losing some: road length covered and share
          before and after, every level) and ``geometry`` (the area no other camera sees);
        - ``closures`` (``level`` rising on a road, a district or at a point): ``road_ids``
          within :data:`FLOOD_CLOSE_M`, ``already_closed`` and ``geometry``;
        - ``none`` when no impact model applies.

        ``{"error": reason}`` when it cannot be computed (the alert is raised regardless).
    """
    try:
        resolved = database_url(url)
        nets = utilities if utilities is not None else shared_utilities(resolved)
        return _impact(rule, stream, resolved, nets)
    except Exception as exc:  # an impact must never stop an alert
        log.warning("impact of rule %s on datastream %s failed: %s", rule.id, stream.id, exc)
        return {"error": f"{type(exc).__name__}: {exc}"}


def _trouble(rule: Rule) -> str:
    """Return what a rule watches for: ``low``, ``high``, ``change``, ``state``, ``silent``."""
    p = rule.params
    if rule.kind == "no_data":
        return "silent"
    if rule.kind == "rate":
        return {"fall": "low", "rise": "high"}.get(p["direction"], "change")
    if "equals" in p:
        return "state"
    return "high" if "above" in p else "low"


def _impact(rule: Rule, stream: Datastream, url: str, nets: Utilities) -> dict[str, Any]:
    trouble, prop, layer = _trouble(rule), stream.observed_property, stream.layer
    if prop == "pressure" and layer in ("pipelines", "pipe_nodes") and trouble in ("low", "change"):
        return _isolation(stream, url, nets)
    if prop == "current" and layer in ("power_lines", "power_nodes") and trouble == "low":
        return _outage(stream, url, nets)
    if layer == "cameras" and ((prop == "status" and trouble == "state") or trouble == "silent"):
        return _camera_loss(stream, url)
    if prop == "level" and trouble in ("high", "change"):
        return _flood(stream, url)
    return {"kind": "none", "detail": f"no impact model for {trouble} {prop} on {layer}"}


def _isolation(stream: Datastream, url: str, nets: Utilities) -> dict[str, Any]:
    feature = _feature(url, stream)
    network = feature["network"]
    if stream.layer == "pipelines":
        outage = nets.isolate(line=str(stream.feature_id), network=network)
    else:
        point = feature["geometry"]
        outage = nets.isolate((point.x, point.y), network=network)
    return {"kind": "isolation", **_outage_json(outage)}


def _outage(stream: Datastream, url: str, nets: Utilities) -> dict[str, Any]:
    _feature(url, stream)  # the asset must be a current feature of the grid
    outage = nets.outage("power", out=[str(stream.feature_id)])
    cascade = nets.cascade(outage)
    dark = [
        {"layer": str(r.layer), "id": str(r.id), "kind": str(r.kind)}
        for r in cascade.dark.itertuples()
    ]
    return {
        "kind": "outage",
        **_outage_json(outage),
        "dark": dark[:MAX_LISTED],
        "water": {name: _outage_json(o)["summary"] for name, o in cascade.water.items()},
    }


def _outage_json(outage: Outage) -> dict[str, Any]:
    pieces = outage.lost.geometry.to_numpy()
    geometry = shapely.line_merge(shapely.union_all(pieces)) if len(pieces) else None
    nodes = sorted(str(i) for i in outage.nodes["id"])
    buildings = sorted(str(i) for i in outage.buildings["id"])
    return _plain(
        {
            "network": outage.network,
            "cause": outage.cause,
            "operate": list(outage.operate),
            "unable": list(outage.unable),
            "summary": outage.summary(),
            "nodes": nodes[:MAX_LISTED],
            "hydrants": [str(h) for h in outage.hydrants][:MAX_LISTED],
            "buildings": buildings[:MAX_LISTED],
            "truncated": len(nodes) > MAX_LISTED or len(buildings) > MAX_LISTED,
            "lost_lines": sorted({str(i) for i in outage.lost["line"]})[:MAX_LISTED],
            "geometry": _geojson(geometry),
        }
    )


def _camera_loss(stream: Datastream, url: str) -> dict[str, Any]:
    camera = str(stream.feature_id)
    _feature(url, stream)
    coverage = camera_coverage(url=url)
    cones = coverage.cones
    mine = cones[cones["id"].astype(str) == camera]
    if not len(mine):
        return {
            "kind": "camera_coverage",
            "camera": camera,
            "watching": False,
            "lost_length_m": 0.0,
            "road_ids": [],
            "districts": [],
            "geometry": None,
            "detail": "the camera watched nothing already (its status, or no view to compute)",
        }
    crs = get_settings().metric_crs
    metric = cones.geometry.to_crs(crs)
    own = metric[mine.index].to_numpy()[0]
    others = shapely.union_all(metric.drop(index=mine.index).to_numpy())
    lost = shapely.difference(own, others) if not shapely.is_empty(others) else own
    minx, miny, maxx, maxy = mine.geometry.total_bounds
    roads = read_layer("roads", bbox=(minx, miny, maxx, maxy), url=url)
    lines = roads.geometry.to_crs(crs).to_numpy()
    pieces = shapely.intersection(lines, lost)
    lengths = shapely.length(pieces)
    keys = shapely.to_wkb(shapely.normalize(lines)) if len(lines) else np.empty(0, dtype=object)
    distinct = ~pd.Series(keys).duplicated().to_numpy()  # a road in both directions once
    road_ids = sorted(
        {str(i) for i, n in zip(roads["id"], lengths, strict=True) if n >= MIN_ROAD_PIECE_M}
    )
    districts = read_layer("districts", url=url)
    areas = districts.geometry.to_crs(crs).to_numpy()
    kept = pieces[distinct & (lengths > 0)]
    before = coverage.districts.set_index("id")
    rows = []
    for index, area in enumerate(areas):
        loss = float(shapely.length(shapely.intersection(kept, area)).sum()) if len(kept) else 0.0
        district_id = districts["id"].iat[index]
        if loss <= 0 or district_id not in before.index:
            continue
        was = before.loc[district_id]
        road_length = float(was["road_length_m"])
        covered = float(was["covered_length_m"])
        rows.append(
            {
                "id": str(district_id),
                "name": None if was["name"] is None else str(was["name"]),
                "level": None if pd.isna(was["level"]) else int(was["level"]),
                "road_length_m": round(road_length, 1),
                "covered_before_m": round(covered, 1),
                "covered_after_m": round(max(covered - loss, 0.0), 1),
                "lost_length_m": round(loss, 1),
                "share_before": round(covered / road_length, 6) if road_length else None,
                "share_after": round(max(covered - loss, 0.0) / road_length, 6)
                if road_length
                else None,
            }
        )
    area_4326 = gpd.GeoSeries([lost], crs=crs).to_crs("EPSG:4326").iloc[0]
    return _plain(
        {
            "kind": "camera_coverage",
            "camera": camera,
            "watching": True,
            "lost_length_m": round(float(lengths[distinct].sum()), 1),
            "road_ids": road_ids[:MAX_LISTED],
            "districts": rows,
            "geometry": _geojson(area_4326),
        }
    )


def _flood(stream: Datastream, url: str) -> dict[str, Any]:
    geometry: shapely.Geometry | None = None
    if stream.layer is not None:
        geometry = _feature(url, stream)["geometry"]
    if stream.layer == "roads" and geometry is not None:
        answer = along(geometry, FLOOD_CLOSE_M, layers=["roads"], url=url)
    elif isinstance(geometry, shapely.Polygon | shapely.MultiPolygon):
        answer = within(geometry, layers=["roads"], url=url)
    else:
        point = _thing_point(url, stream) or (
            None if geometry is None else shapely.point_on_surface(geometry)
        )
        if point is None:
            raise LookupError(f"datastream {stream.id} has no location and no feature")
        lonlat = (float(shapely.get_x(point)), float(shapely.get_y(point)))
        answer = around(lonlat, FLOOD_CLOSE_M, layers=["roads"], url=url)
    roads = answer.features["roads"]
    road_ids = sorted({str(i) for i in roads["id"]})
    closed_vids = sorted(closed_by_layer(url=url))
    with cursor(url) as cur:
        cur.execute(
            "SELECT DISTINCT id FROM roads WHERE vid = ANY(%s) AND id = ANY(%s)",
            (closed_vids, road_ids),
        )
        closed = sorted(str(row[0]) for row in cur.fetchall())
    merged = shapely.union_all(roads.geometry.to_numpy()) if len(roads) else None
    return _plain(
        {
            "kind": "closures",
            "close_m": FLOOD_CLOSE_M,
            "road_ids": road_ids[:MAX_LISTED],
            "already_closed": closed[:MAX_LISTED],
            "geometry": _geojson(merged),
        }
    )


def _feature(url: str, stream: Datastream) -> dict[str, Any]:
    """Return the current version of the datastream's feature: attributes and ``geometry``."""
    layer = LAYERS.get(str(stream.layer))
    if layer is None:
        raise LookupError(f"datastream {stream.id}'s Thing is on no known layer ({stream.layer})")
    query = sql.SQL(
        "SELECT to_jsonb(t) - 'geom' - 'geom_3857' - 'props', ST_AsBinary(t.geom) "
        "FROM {} t WHERE t.valid_to IS NULL AND t.id = %s"
    ).format(sql.Identifier(layer.table))
    with cursor(url) as cur:
        cur.execute(query, (stream.feature_id,))
        row = cur.fetchone()
    if row is None:
        raise LookupError(f"{stream.layer} has no current feature {stream.feature_id!r}")
    return {**row[0], "geometry": shapely.from_wkb(bytes(row[1]))}


def _thing_point(url: str, stream: Datastream) -> shapely.Geometry | None:
    with cursor(url) as cur:
        cur.execute(
            "SELECT ST_AsBinary(ST_PointOnSurface(l.geom)) FROM sta_thing_locations tl "
            "JOIN sta_locations l ON l.id = tl.location_id WHERE tl.thing_id = %s "
            "ORDER BY l.id DESC LIMIT 1",
            (stream.thing_id,),
        )
        row = cur.fetchone()
    return None if row is None else shapely.from_wkb(bytes(row[0]))


def _feature_points(
    url: str, features: set[tuple[str, str]]
) -> dict[tuple[str, str], tuple[float, float]]:
    """Return a lon/lat point of each feature (a line's middle, else a point on it)."""
    out: dict[tuple[str, str], tuple[float, float]] = {}
    by_layer: dict[str, list[str]] = {}
    for layer, feature_id in features:
        if layer in LAYERS:
            by_layer.setdefault(layer, []).append(feature_id)
    with cursor(url) as cur:
        for layer, ids in sorted(by_layer.items()):
            cur.execute(
                sql.SQL(
                    "SELECT id, ST_X(p), ST_Y(p) FROM (SELECT id, CASE WHEN "
                    "GeometryType(geom) = 'LINESTRING' THEN ST_LineInterpolatePoint(geom, 0.5) "
                    "ELSE ST_PointOnSurface(geom) END AS p FROM {} "
                    "WHERE valid_to IS NULL AND id = ANY(%s)) f"
                ).format(sql.Identifier(LAYERS[layer].table)),
                (ids,),
            )
            for feature_id, lon, lat in cur.fetchall():
                out[(layer, str(feature_id))] = (float(lon), float(lat))
    return out


def _geojson(geometry: shapely.Geometry | None) -> dict[str, Any] | None:
    if geometry is None or shapely.is_empty(geometry):
        return None
    rounded = shapely.set_precision(geometry, 1e-7)
    return dict(json.loads(shapely.to_geojson(rounded)))


def _plain(value: Any) -> Any:
    """Turn numpy scalars and tuples into JSON's types, recursively."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@contextmanager
def _writing(url: str | None) -> Iterator[psycopg.Cursor[Any]]:
    """Lend a cursor in a transaction committed when the block ends without an error."""
    with get_engine(url).begin() as connection:
        raw = connection.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cur:
            yield cur


__all__ = [
    "FLOOD_CLOSE_M",
    "KINDS",
    "SEVERITIES",
    "STATES",
    "AlertRuleError",
    "AlertRules",
    "AlertStateError",
    "Rule",
    "UnknownAlertError",
    "acknowledge",
    "add_rule",
    "alerts",
    "check_params",
    "delete_rule",
    "enable_rule",
    "get_alert",
    "get_rule",
    "impact_of",
    "resolve",
    "rules",
    "shared_utilities",
]
