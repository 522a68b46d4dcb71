"""Live road speeds: traffic detector readings turned into the speed routing uses per road.

A road's detectors are Things on it (``layer = 'roads'``, ``feature_id`` = the road's id), one
per lane, each with a ``speed`` datastream (the mean speed of the vehicles that passed in an
interval) and usually a ``flow`` one (vehicles per hour in the same interval).
:class:`RoadSpeeds`, a processor of :class:`twin.live.feed.Feed`, combines the lanes of one
interval into the road's speed and writes it into ``live_speeds`` with an expiry; routing
(``routing_edges_all`` and :class:`routing.Router`) uses it until it expires, then falls back
to the road's free-flow speed.

Combining lanes (:func:`road_speed`). A road's speed for routing is a *space-mean* speed: the
speed at which the traffic on the road moves as a whole. With lane ``i`` carrying a flow
``q_i`` at speed ``v_i``, its density is ``k_i = q_i / v_i`` (the fundamental relation
``q = k v``), and the road's space-mean speed is its total flow over its total density::

    v = sum(q_i) / sum(q_i / v_i)

the flow-weighted harmonic mean of the lanes' speeds (Highway Capacity Manual, 6th ed., TRB
2016, chapter 4: space mean speed, and flow = density x space mean speed; Wardrop 1952, "Some
theoretical aspects of road traffic research", for why the harmonic and not the arithmetic
mean). Each lane detector's mean speed stands for its lane's speed over the interval. When a
lane's flow is not known the lanes are averaged plainly; a lane where no vehicle passed
(flow 0, or a speed of 0 or less such as SUMO's -1) says nothing about speed and is left out.

Readings of one interval can arrive in several batches (one MQTT message each): the road's
speed is computed from every lane observation stored for that interval, not only the batch's,
so it does not depend on how the readings were batched. A road's live speed only moves
forward in time: a reading older than the live speed (late, or replayed) is ignored, and one
already older than the staleness setting (``TWIN_LIVE_STALE_S``) is never written.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from layers.database import cursor, get_engine
from layers.observations import StoredObservation, iso
from layers.settings import get_settings
from twin.live.expiry import delete_expired
from twin.live.feed import Event
from twin.live.registry import datastreams

log = logging.getLogger(__name__)

#: The layer road detectors' Things are features of.
ROADS = "roads"
#: Observed properties a road's live speed is computed from.
SPEED, FLOW = "speed", "flow"
#: The fastest speed a road detector can plausibly report, km/h; readings above it are faults.
MAX_SPEED_KMH = 250.0
#: Speed units (UCUM symbols, and the common spelling ``mph``) and their factor to km/h.
SPEED_UNITS = {"km/h": 1.0, "m/s": 3.6, "[mi_i]/h": 1.609344, "mph": 1.609344}


def road_speed(lanes: Iterable[tuple[float, float | None]]) -> float | None:
    """Combine lane detectors' mean speeds of one interval into the road's space-mean speed.

    The flow-weighted harmonic mean ``sum(q) / sum(q / v)`` when every lane's flow is known,
    else the arithmetic mean of the speeds (see the module's notes for the source).

    Parameters
    ----------
    lanes
        ``(speed, flow)`` per lane detector: its mean speed (km/h) and its flow (vehicles per
        hour, or any unit common to the lanes), or None when the flow is not known. Lanes with
        no vehicle (flow 0, speed 0 or less, or not finite) are left out, and so are speeds
        above :data:`MAX_SPEED_KMH` (a faulty detector: one such reading would make the road
        free to cross for routing).

    Returns
    -------
    float or None
        The road's speed, km/h; None when no lane saw a vehicle.
    """
    kept = [
        (speed, flow)
        for speed, flow in lanes
        if math.isfinite(speed)
        and 0 < speed <= MAX_SPEED_KMH
        and (flow is None or (math.isfinite(flow) and flow > 0))
    ]
    if not kept:
        return None
    if all(flow is not None for _, flow in kept):
        flows = [float(flow) for _, flow in kept if flow is not None]
        return sum(flows) / sum(q / v for q, (v, _) in zip(flows, kept, strict=True))
    return sum(speed for speed, _ in kept) / len(kept)


# every speed and flow observation of the detectors on some roads at some times
_LANES = """
SELECT x.road, x.at, d.thing_id, p.name, o.result,
       COALESCE(o.phenomenon_time_end, o.phenomenon_time),
       COALESCE(d.unit_of_measurement ->> 'symbol', '')
FROM unnest(%(roads)s::text[], %(times)s::timestamptz[]) AS x(road, at)
JOIN sta_things t ON t.layer = 'roads' AND t.feature_id = x.road
JOIN sta_datastreams d ON d.thing_id = t.id
JOIN sta_observed_properties p ON p.id = d.observed_property_id AND p.name IN ('speed', 'flow')
JOIN sta_observations o ON o.datastream_id = d.id AND o.phenomenon_time = x.at
WHERE o.result IS NOT NULL
  -- the batch's span: only the partitions of those days are searched
  AND o.phenomenon_time BETWEEN %(first)s AND %(last)s
"""

_CURRENT = "SELECT road_id, speed_kmh, observed_at FROM live_speeds WHERE road_id = ANY(%s)"

# one statement: upsert the new speeds (never back in time), return them with free flow (the
# routing view's rule for the car profile: maxspeed, else the class's speed, else the default)
_UPSERT = """
WITH applied AS (
    INSERT INTO live_speeds AS l (road_id, speed_kmh, observed_at, expires_at)
    SELECT x.road, x.speed, x.at, x.at + make_interval(secs => %(stale_s)s)
    FROM unnest(%(roads)s::text[], %(speeds)s::float8[], %(times)s::timestamptz[])
        AS x(road, speed, at)
    WHERE EXISTS (SELECT 1 FROM roads r WHERE r.id = x.road AND r.valid_to IS NULL)
    ON CONFLICT (road_id) DO UPDATE SET speed_kmh = excluded.speed_kmh,
        observed_at = excluded.observed_at, expires_at = excluded.expires_at
    WHERE l.observed_at <= excluded.observed_at
    RETURNING l.road_id, l.speed_kmh, l.observed_at
)
SELECT a.road_id, a.speed_kmh, COALESCE(r.maxspeed, s.speed_kmh, p.default_speed_kmh),
       a.observed_at
FROM applied a
JOIN roads r ON r.id = a.road_id AND r.valid_to IS NULL
JOIN routing_profiles p ON p.profile = 'car'
LEFT JOIN routing_speeds s ON s.class = r.class
ORDER BY a.road_id
"""


class RoadSpeeds:
    """Processor: road detectors' ``speed`` (and ``flow``) observations -> ``live_speeds``.

    Parameters
    ----------
    stale_s
        How long a live speed counts after it was observed, s; ``TWIN_LIVE_STALE_S`` (read
        at each batch) by default.
    """

    def __init__(self, *, stale_s: float | None = None):
        self.stale_s = stale_s
        self._bad_units: set[int] = set()

    def observe(self, stored: Sequence[StoredObservation], *, url: str | None) -> list[Event]:
        """Update the live speed of each road whose detectors reported in ``stored``.

        Parameters
        ----------
        stored
            Observations just stored (any datastreams; only road detectors' ``speed`` and
            ``flow`` are used).
        url
            Database URL; the configured one when None.

        Returns
        -------
        list of dict
            One ``speed`` event per road whose live speed changed: ``road``, ``speed_kmh``,
            ``free_flow_kmh``, ``congestion`` (speed / free flow), ``observed_at`` (ISO 8601).
        """
        infos = datastreams({o.datastream_id for o in stored}, url=url)
        moments: set[tuple[str, datetime]] = set()
        for obs in stored:
            info = infos.get(obs.datastream_id)
            if (
                info is not None
                and info.layer == ROADS
                and info.feature_id is not None
                and info.observed_property in (SPEED, FLOW)
            ):
                moments.add((info.feature_id, obs.phenomenon_time))
        if not moments:
            return []
        pairs = sorted(moments)
        with cursor(url) as cur:
            times = [t for _, t in pairs]
            cur.execute(
                _LANES,
                {
                    "roads": [r for r, _ in pairs],
                    "times": times,
                    "first": min(times),
                    "last": max(times),
                },
            )
            rows = cur.fetchall()
            cur.execute(_CURRENT, (sorted({r for r, _ in pairs}),))
            current = {str(r): (float(v), at) for r, v, at in cur.fetchall()}
            now = _clock(cur)  # the store's: what the routing view compares expires_at with
        stale = timedelta(seconds=self.stale_s or get_settings().live_stale_s)
        updates: dict[str, tuple[float, datetime]] = {}
        for road, (speed, at) in self._combine(rows).items():
            if at + stale <= now:
                continue  # stale already: routing would not count it
            known = current.get(road)
            if known is not None and (known[1] > at or known == (speed, at)):
                continue  # a late reading, or nothing new
            updates[road] = (speed, at)
        if not updates:
            return []
        roads = sorted(updates)
        with get_engine(url).begin() as connection:
            raw = connection.connection.driver_connection
            assert raw is not None
            with raw.cursor() as cur:
                cur.execute(
                    _UPSERT,
                    {
                        "stale_s": stale.total_seconds(),
                        "roads": roads,
                        "speeds": [updates[r][0] for r in roads],
                        "times": [updates[r][1] for r in roads],
                    },
                )
                applied = cur.fetchall()
        return [_speed_event(*row) for row in applied]

    def _combine(self, rows: Sequence[tuple[Any, ...]]) -> dict[str, tuple[float, datetime]]:
        """Per road, the speed of its newest interval with a usable reading, and its end."""
        # road -> interval start -> thing -> {"speed": km/h, "flow": q, "end": time}
        lanes: dict[str, dict[datetime, dict[int, dict[str, Any]]]] = defaultdict(
            lambda: defaultdict(dict)
        )
        for road, start, thing, prop, result, end, unit in rows:
            lane = lanes[str(road)][start].setdefault(int(thing), {})
            lane["end"] = max(end, lane.get("end", end))
            if prop == FLOW:
                lane["flow"] = float(result)
                continue
            factor = SPEED_UNITS.get(unit)
            if factor is None:
                if thing not in self._bad_units:
                    self._bad_units.add(thing)
                    log.warning(
                        "speeds of Thing %s on road %s ignored: unknown unit %r (known: %s)",
                        thing,
                        road,
                        unit,
                        ", ".join(SPEED_UNITS),
                    )
                continue
            lane["speed"] = float(result) * factor
        out: dict[str, tuple[float, datetime]] = {}
        for road, intervals in lanes.items():
            for start in sorted(intervals, reverse=True):
                things = [lane for lane in intervals[start].values() if "speed" in lane]
                speed = road_speed((lane["speed"], lane.get("flow")) for lane in things)
                if speed is not None:
                    out[road] = (speed, max(lane["end"] for lane in things))
                    break
        return out


def _speed_event(road: str, speed: float, free_flow: float, at: datetime) -> Event:
    return {
        "type": "speed",
        "road": str(road),
        "speed_kmh": float(speed),
        "free_flow_kmh": float(free_flow),
        "congestion": float(speed) / float(free_flow),
        "observed_at": iso(at),
    }


_ANY_EXPIRED = "SELECT EXISTS (SELECT 1 FROM live_speeds WHERE expires_at <= %(now)s)"

_EXPIRE = """
WITH gone AS (
    DELETE FROM live_speeds WHERE expires_at <= %(now)s
    RETURNING road_id, observed_at
)
SELECT g.road_id, COALESCE(r.maxspeed, s.speed_kmh, p.default_speed_kmh), g.observed_at
FROM gone g
LEFT JOIN roads r ON r.id = g.road_id AND r.valid_to IS NULL
LEFT JOIN routing_profiles p ON p.profile = 'car'
LEFT JOIN routing_speeds s ON s.class = r.class
ORDER BY g.road_id
"""


def _expire(url: str | None, now: datetime | None) -> list[tuple[Any, ...]]:
    return delete_expired(any_expired=_ANY_EXPIRED, delete=_EXPIRE, url=url, now=now)


def _clock(cur: Any) -> datetime:
    """Return the store's clock (what the routing view's ``expires_at > now()`` reads)."""
    cur.execute("SELECT now()")
    moment: datetime = cur.fetchone()[0]
    return moment


def expire_speeds(url: str | None = None, *, now: datetime | None = None) -> int:
    """Delete the live speeds that have expired, so the counters of routing and tiles move.

    A live speed stops counting at its ``expires_at`` anyway (the routing view and
    ``live_congestion`` compare it with the clock); deleting it moves the ``live_speeds`` and
    ``live_congestion`` counters in ``layer_versions``, which caches key on. Nothing is
    written (and no counter moves) when nothing has expired.

    Parameters
    ----------
    url
        Database URL; the configured one by default.
    now
        The moment to expire at; the store's clock by default.

    Returns
    -------
    int
        How many live speeds were deleted.
    """
    return len(_expire(url, now))


def expire(*, url: str | None = None, now: datetime | None = None) -> list[Event]:
    """Expire stale live speeds and say so: the live service's housekeeping task.

    Parameters
    ----------
    url
        Database URL; the configured one by default.
    now
        The moment to expire at; the store's clock by default.

    Returns
    -------
    list of dict
        One ``speed`` event per road that fell back to its free-flow speed: ``road``,
        ``speed_kmh`` None, ``free_flow_kmh`` (None if the road is gone), ``congestion`` None,
        ``observed_at`` (of the expired speed) and ``expired`` true.
    """
    return [
        {
            "type": "speed",
            "road": str(road),
            "speed_kmh": None,
            "free_flow_kmh": None if free_flow is None else float(free_flow),
            "congestion": None,
            "observed_at": iso(at),
            "expired": True,
        }
        for road, free_flow, at in _expire(url, now)
    ]
