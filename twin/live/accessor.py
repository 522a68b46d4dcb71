"""``city.live``: the live twin from Python, as DataFrames (a namespace of the City facade).

>>> import twin
>>> city = twin.connect()
>>> ds = city.live.register("loop-7/speed", thing="loop-7", observed_property="speed",
...                         layer="roads", feature_id="acosta:104")
>>> city.live.ingest(pd.DataFrame({"datastream": [ds], "phenomenonTime": [now], "result": [12.5]}))
>>> city.live.readings([ds], start=an_hour_ago, interval="5min")
>>> city.live.alerts(state="open")
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

from layers.database import database_url
from layers.errors import ParameterError
from layers.observations import (
    INTERVALS,
    MEASUREMENT,
    Reading,
    ReadingError,
    StoreReport,
    latest,
    parse_time,
    refusals,
    series,
)
from twin.live import alerts as live_alerts
from twin.live.feed import Feed
from twin.live.processors import default_processors
from twin.live.registry import register
from twin.live.replay import ReplayReport, replay
from twin.places import Place, as_lonlat


def _moment(value: datetime | str | None, name: str) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return parse_time(value, name=name)


class Live:
    """The live twin of one store: sensors, readings, latest state and alerts.

    Parameters
    ----------
    url
        Database URL.
    """

    def __init__(self, url: str):
        self.url = database_url(url)
        self._feed: Feed | None = None

    def __repr__(self) -> str:
        return "<city.live: register, ingest, replay, readings, latest, alerts, rules>"

    @property
    def feed(self) -> Feed:
        """The feed readings from Python go through (the twin's own processors, no broker)."""
        if self._feed is None:
            self._feed = Feed(url=self.url, processors=default_processors())
        return self._feed

    def register(
        self,
        name: str,
        *,
        thing: str,
        observed_property: str,
        layer: str | None = None,
        feature_id: str | None = None,
        sensor: str = "sensor",
        observation_type: str = MEASUREMENT,
        unit: str | None = None,
        location: Place | None = None,
    ) -> int:
        """Register a datastream on a twin feature (see :func:`twin.live.registry.register`).

        ``location`` is ``(lon, lat)`` or a shapely Point, EPSG:4326; the other arguments are
        the registry's.

        Returns
        -------
        int
            The datastream's ``@iot.id``.

        Raises
        ------
        ParameterError
            A ``location`` that is not a position, or as the registry refuses a datastream.
        """
        return register(
            name,
            thing=thing,
            observed_property=observed_property,
            layer=layer,
            feature_id=feature_id,
            sensor=sensor,
            observation_type=observation_type,
            unit=unit,
            location=None if location is None else as_lonlat(location, "location"),
            url=self.url,
        )

    def ingest(self, readings: pd.DataFrame | Sequence[Reading]) -> StoreReport:
        """Store readings through the one path every feed takes.

        Parameters
        ----------
        readings
            :class:`~layers.observations.Reading` objects, or a DataFrame with columns
            ``datastream`` (id), ``phenomenonTime`` (timezone-aware or UTC) and ``result``.

        Returns
        -------
        StoreReport
            Stored, duplicates and refused readings (refusals give the row's position).

        Raises
        ------
        ParameterError
            If the DataFrame lacks a column.
        """
        if isinstance(readings, pd.DataFrame):
            missing = {"datastream", "phenomenonTime", "result"} - set(readings.columns)
            if missing:
                raise ParameterError(
                    f"the readings have no column {', '.join(sorted(missing))}",
                    parameter="readings",
                )
            rows: list[Reading | ReadingError] = []
            times = pd.to_datetime(readings["phenomenonTime"], utc=True)
            for ident, moment, result in zip(
                readings["datastream"], times, readings["result"], strict=True
            ):
                rows.append(
                    Reading(
                        int(ident),
                        moment.to_pydatetime(),
                        result.item() if hasattr(result, "item") else result,
                    )
                )
            return self.feed.ingest(rows)
        return self.feed.ingest(list(readings))

    def replay(
        self,
        path: str | os.PathLike[str],
        *,
        speed: float | None = 1.0,
        rebase: bool = False,
        progress: Callable[[int, int], None] | None = None,
    ) -> ReplayReport:
        """Replay a recording (CSV or Parquet) at ``speed`` times real time.

        See :func:`twin.live.replay.replay`.

        Returns
        -------
        ReplayReport
            What was stored and refused, with row numbers.
        """
        return replay(path, feed=self.feed, speed=speed, rebase=rebase, progress=progress)

    def readings(
        self,
        datastreams: Sequence[int],
        *,
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        interval: str | None = None,
    ) -> pd.DataFrame:
        """Return readings as a time series: raw, or aggregated per 1, 5 or 15 minutes.

        Parameters
        ----------
        datastreams
            Datastream ids.
        start, end
            The time range (ISO 8601 or datetimes); the last hour by default.
        interval
            ``1min``, ``5min`` or ``15min`` to aggregate numeric results; raw when None.

        Returns
        -------
        pandas.DataFrame
            Raw: columns ``datastream``, ``time`` (UTC), ``result``. Aggregated: ``datastream``,
            ``time`` (bin start, UTC), ``count``, ``mean``, ``min``, ``max``.

        Raises
        ------
        ParameterError
            If the interval is unknown or the range reversed.
        """
        until = _moment(end, "end") or datetime.now(UTC)
        since = _moment(start, "start") or until - timedelta(hours=1)
        rows = series(list(datastreams), start=since, end=until, interval=interval, url=self.url)
        columns = (
            ["datastream", "time", "count", "mean", "min", "max"]
            if interval in INTERVALS
            else ["datastream", "time", "result"]
        )
        frame = pd.DataFrame(rows, columns=columns)
        frame["time"] = pd.to_datetime(frame["time"], utc=True)
        return frame

    def latest(self, datastreams: Sequence[int] | None = None) -> pd.DataFrame:
        """Return the newest observation of each datastream (one read).

        Parameters
        ----------
        datastreams
            Datastream ids; every one when None.

        Returns
        -------
        pandas.DataFrame
            One row per datastream: ``datastream_id``, ``name``, ``phenomenon_time``, ``result``,
            ``unit``, ``layer``, ``feature_id`` and the rest of :func:`layers.observations.latest`.
        """
        return pd.DataFrame(latest(datastreams, url=self.url))

    def refusals(self) -> dict[str, int]:
        """Return how many readings were refused, by reason."""
        return refusals(url=self.url)

    def alerts(
        self, *, state: str | None = None, since: datetime | str | None = None, limit: int = 100
    ) -> pd.DataFrame:
        """Return alerts, newest first, with their asset and impact.

        Parameters
        ----------
        state
            ``raised``, ``acknowledged``, ``resolved`` or ``open``; all by default.
        since
            Only alerts that changed at or after this moment.
        limit
            Most alerts returned.

        Returns
        -------
        pandas.DataFrame
            One row per alert (see :func:`twin.live.alerts.alerts`).
        """
        return pd.DataFrame(live_alerts.alerts(state=state, since=since, limit=limit, url=self.url))

    def add_rule(
        self,
        *,
        name: str,
        kind: str,
        datastream_id: int | None = None,
        observed_property: str | None = None,
        params: Mapping[str, Any] | None = None,
        severity: str = "warning",
    ) -> live_alerts.Rule:
        """Add an alert rule (see :func:`twin.live.alerts.add_rule`).

        Returns
        -------
        twin.live.alerts.Rule
            The stored rule.
        """
        return live_alerts.add_rule(
            name=name,
            kind=kind,
            datastream_id=datastream_id,
            observed_property=observed_property,
            params=params,
            severity=severity,
            url=self.url,
        )

    def acknowledge(self, alert_id: int, *, by: str) -> dict[str, Any]:
        """Acknowledge a raised alert; return it."""
        return live_alerts.acknowledge(alert_id, by=by, url=self.url)

    def resolve(self, alert_id: int, *, by: str) -> dict[str, Any]:
        """Resolve an alert by hand; return it."""
        return live_alerts.resolve(alert_id, by=by, url=self.url)
