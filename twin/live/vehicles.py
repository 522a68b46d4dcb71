"""Live vehicle positions (AVL): position readings move the twin's units while they last.

A vehicle is a feature of the ``resources`` layer (``kind = 'vehicle'``, or any unit that
moves); its tracker is a Thing on it (``layer = 'resources'``, ``feature_id`` = the
resource's id) with a ``position`` datastream whose results are GeoJSON Points
(``{"type": "Point", "coordinates": [lon, lat]}``, or the bare ``[lon, lat]``; EPSG:4326).
:class:`VehiclePositions`, a processor of :class:`twin.live.feed.Feed`, keeps the newest
position of each resource in ``live_positions`` until it is older than the staleness setting
(``TWIN_LIVE_STALE_S``); dispatch (:meth:`twin.City.nearest_units`) reads it over the
resource's stored position while it lasts. The ``resources`` layer and its versions are never
written: a tracker reporting every few seconds would otherwise make a version each time.

A position that is not a point, not finite, or outside the city's extent
(``TWIN_CITY_BBOX``), or a tracker on a resource that does not exist, is refused by the
processor: logged with its reason and counted in ``live_refusals`` (the reading itself stays
stored, as received). A position older than the resource's live one is ignored.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from layers.database import get_engine
from layers.errors import ParameterError
from layers.observations import StoredObservation, iso
from layers.settings import get_settings
from twin.live.expiry import delete_expired
from twin.live.feed import Event
from twin.live.registry import datastreams

log = logging.getLogger(__name__)

#: The layer vehicles' Things are features of.
RESOURCES = "resources"
#: The observed property of a tracker's datastream.
POSITION = "position"


class PositionError(ParameterError):
    """A position result that cannot move a unit; ``reason`` is what it is counted under."""

    def __init__(self, message: str, *, reason: str):
        super().__init__(message, parameter="result")
        self.reason = reason


def point_of(result: Any) -> tuple[float, float]:
    """Read a position result: a GeoJSON Point, or ``[lon, lat]``, inside the city.

    Parameters
    ----------
    result
        The observation's result: ``{"type": "Point", "coordinates": [lon, lat]}`` or
        ``[lon, lat]`` (a third coordinate, the height, is allowed and not used), EPSG:4326.

    Returns
    -------
    tuple of float
        ``(lon, lat)`` in degrees.

    Raises
    ------
    PositionError
        Reason ``bad position`` if it is not a point of finite numbers; ``outside the city`` if
        it is outside ``TWIN_CITY_BBOX``.
    """
    coordinates = result
    if isinstance(result, dict):
        if result.get("type") != "Point":
            raise PositionError(
                f"a position must be a GeoJSON Point, not {str(result.get('type'))[:30]!r}",
                reason="bad position",
            )
        coordinates = result.get("coordinates")
    if (
        not isinstance(coordinates, list | tuple)
        or len(coordinates) not in (2, 3)
        or not all(isinstance(c, int | float) and not isinstance(c, bool) for c in coordinates)
    ):
        raise PositionError(
            f"a position must be [lon, lat] numbers, not {str(coordinates)[:60]!r}",
            reason="bad position",
        )
    lon, lat = float(coordinates[0]), float(coordinates[1])
    if not (math.isfinite(lon) and math.isfinite(lat)):
        raise PositionError(f"position ({lon}, {lat}) is not finite", reason="bad position")
    xmin, ymin, xmax, ymax = get_settings().city_bbox
    if not (xmin <= lon <= xmax and ymin <= lat <= ymax):
        raise PositionError(
            f"position ({lon}, {lat}) is outside the city's extent "
            f"({xmin}, {ymin}, {xmax}, {ymax})",
            reason="outside the city",
        )
    return lon, lat


# one statement: the newest position of each existing resource, never back in time
_UPSERT = """
WITH applied AS (
    INSERT INTO live_positions AS p (resource_id, geom, observed_at, expires_at)
    SELECT x.id, ST_SetSRID(ST_MakePoint(x.lon, x.lat), 4326), x.at,
           x.at + make_interval(secs => %(stale_s)s)
    FROM unnest(%(ids)s::text[], %(lons)s::float8[], %(lats)s::float8[],
                %(times)s::timestamptz[]) AS x(id, lon, lat, at)
    WHERE EXISTS (SELECT 1 FROM resources r WHERE r.id = x.id AND r.valid_to IS NULL)
      AND x.at + make_interval(secs => %(stale_s)s) > now()
    ON CONFLICT (resource_id) DO UPDATE SET geom = excluded.geom,
        observed_at = excluded.observed_at, expires_at = excluded.expires_at
    WHERE p.observed_at < excluded.observed_at
    RETURNING p.resource_id, ST_X(p.geom), ST_Y(p.geom), p.observed_at
)
SELECT * FROM applied ORDER BY resource_id
"""

_KNOWN = "SELECT DISTINCT id FROM resources WHERE valid_to IS NULL AND id = ANY(%s)"

_REFUSALS = """
INSERT INTO live_refusals AS r (reason, count, last_at, last_example)
SELECT reason, n, now(), example FROM unnest(%s::text[], %s::bigint[], %s::text[])
    AS t(reason, n, example)
ON CONFLICT (reason) DO UPDATE SET count = r.count + excluded.count,
    last_at = excluded.last_at, last_example = excluded.last_example
"""


class VehiclePositions:
    """Processor: ``position`` observations of resources' trackers -> ``live_positions``.

    Parameters
    ----------
    stale_s
        How long a live position counts after it was observed, s; ``TWIN_LIVE_STALE_S`` (read
        at each batch) by default.
    """

    def __init__(self, *, stale_s: float | None = None):
        self.stale_s = stale_s

    def observe(self, stored: Sequence[StoredObservation], *, url: str | None) -> list[Event]:
        """Move the resources whose trackers reported in ``stored``.

        Parameters
        ----------
        stored
            Observations just stored (only ``position`` ones of Things on ``resources`` are
            used).
        url
            Database URL; the configured one when None.

        Returns
        -------
        list of dict
            One ``vehicle`` event per resource moved: ``resource``, ``lon``, ``lat`` and
            ``observed_at`` (ISO 8601).
        """
        infos = datastreams({o.datastream_id for o in stored}, url=url)
        newest: dict[str, tuple[datetime, float, float]] = {}
        refused: Counter[str] = Counter()
        examples: dict[str, str] = {}

        def refuse(reason: str, message: str) -> None:
            refused[reason] += 1
            examples[reason] = message
            log.warning("live position refused (%s): %s", reason, message)

        for obs in stored:
            info = infos.get(obs.datastream_id)
            if (
                info is None
                or info.observed_property != POSITION
                or info.layer != RESOURCES
                or info.feature_id is None
            ):
                continue
            try:
                lon, lat = point_of(obs.result)
            except PositionError as exc:
                refuse(exc.reason, f"Observation {obs.id} of Datastream {info.id}: {exc}")
                continue
            at = obs.phenomenon_time_end or obs.phenomenon_time
            seen = newest.get(info.feature_id)
            if seen is None or seen[0] < at:
                newest[info.feature_id] = (at, lon, lat)
        applied: list[tuple[Any, ...]] = []
        stale_s = self.stale_s or get_settings().live_stale_s
        with get_engine(url).begin() as connection:
            raw = connection.connection.driver_connection
            assert raw is not None
            with raw.cursor() as cur:
                if newest:
                    ids = sorted(newest)
                    cur.execute(_KNOWN, (ids,))
                    known = {str(i) for (i,) in cur.fetchall()}
                    for missing in sorted(set(ids) - known):
                        refuse("unknown resource", f"no current resource {missing!r} to move")
                    ids = [i for i in ids if i in known]
                    if ids:
                        cur.execute(
                            _UPSERT,
                            {
                                "stale_s": stale_s,
                                "ids": ids,
                                "lons": [newest[i][1] for i in ids],
                                "lats": [newest[i][2] for i in ids],
                                "times": [newest[i][0] for i in ids],
                            },
                        )
                        applied = list(cur.fetchall())
                if refused:
                    reasons = sorted(refused)
                    cur.execute(
                        _REFUSALS,
                        (
                            reasons,
                            [refused[r] for r in reasons],
                            [examples[r][:500] for r in reasons],
                        ),
                    )
        return [
            {
                "type": "vehicle",
                "resource": str(resource),
                "lon": float(lon),
                "lat": float(lat),
                "observed_at": iso(at),
            }
            for resource, lon, lat, at in applied
        ]


_ANY_EXPIRED = "SELECT EXISTS (SELECT 1 FROM live_positions WHERE expires_at <= %(now)s)"

# the units fall back to their stored positions
_EXPIRE = """
WITH gone AS (
    DELETE FROM live_positions WHERE expires_at <= %(now)s
    RETURNING resource_id, observed_at
)
SELECT g.resource_id, ST_X(r.geom), ST_Y(r.geom), g.observed_at
FROM gone g
LEFT JOIN resources r ON r.id = g.resource_id AND r.valid_to IS NULL
ORDER BY g.resource_id
"""


def _expire(url: str | None, now: datetime | None) -> list[tuple[Any, ...]]:
    return delete_expired(any_expired=_ANY_EXPIRED, delete=_EXPIRE, url=url, now=now)


def expire_positions(url: str | None = None, *, now: datetime | None = None) -> int:
    """Delete the live positions that have expired (the units fall back to their stored ones).

    Dispatch ignores an expired position anyway (it compares ``expires_at`` with the clock);
    deleting it moves the ``live_positions`` counter in ``layer_versions``. Nothing is written
    when nothing has expired.

    Parameters
    ----------
    url
        Database URL; the configured one by default.
    now
        The moment to expire at; the store's clock by default.

    Returns
    -------
    int
        How many live positions were deleted.
    """
    return len(_expire(url, now))


def expire(*, url: str | None = None, now: datetime | None = None) -> list[Event]:
    """Expire stale live positions and say so: the live service's housekeeping task.

    Parameters
    ----------
    url
        Database URL; the configured one by default.
    now
        The moment to expire at; the store's clock by default.

    Returns
    -------
    list of dict
        One ``vehicle`` event per resource back at its stored position: ``resource``, ``lon``
        and ``lat`` of the stored position (None if the resource is gone), ``observed_at`` (of
        the expired position) and ``expired`` true.
    """
    return [
        {
            "type": "vehicle",
            "resource": str(resource),
            "lon": None if lon is None else float(lon),
            "lat": None if lat is None else float(lat),
            "observed_at": iso(at),
            "expired": True,
        }
        for resource, lon, lat, at in _expire(url, now)
    ]
