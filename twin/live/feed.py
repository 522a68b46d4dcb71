"""The one path every reading takes: store, republish, derive the live state, push.

HTTP (``POST /v1.1/Observations``, ``CreateObservations``), MQTT (the bridge in
:mod:`twin.live.mqtt`) and the replay CLI all hand their readings to :meth:`Feed.ingest`:

1. :func:`layers.observations.store_observations` checks and stores them (duplicates once,
   bad readings refused and counted);
2. what was stored is republished on ``<prefix>v1.1/Datastreams(<id>)/Observations`` (the
   SensorThings MQTT extension, OGC 18-088 section 14.2; FROST-Server issue #2097 is the
   report of HTTP-created observations missing there);
3. each processor (live road speeds, vehicle positions, alert rules) turns them into state
   changes, which are published as events on ``<prefix>twin/events`` for every server's push
   stream.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from layers.observations import Reading, ReadingError, StoredObservation, StoreReport
from layers.observations import store_observations as _store

log = logging.getLogger(__name__)

#: An event of the push stream: a JSON object with a ``type`` (``observation``, ``speed``,
#: ``vehicle``, ``alert``) and what changed.
Event = dict[str, Any]


class Processor(Protocol):
    """Something that turns stored observations into live state changes."""

    def observe(self, stored: Sequence[StoredObservation], *, url: str | None) -> list[Event]:
        """Act on stored observations; return the events to push."""
        ...


class Publisher(Protocol):
    """Where stored observations and events go (the MQTT broker, or nothing)."""

    def observations(self, stored: Sequence[StoredObservation]) -> None:
        """Republish stored observations on their datastreams' topics."""
        ...

    def events(self, events: Sequence[Event]) -> None:
        """Publish events for the push streams."""
        ...


class Feed:
    """Ingest readings into one store, then republish and derive the live state.

    Parameters
    ----------
    url
        Database URL; the configured one by default.
    publisher
        Where to republish observations and send events; none by default.
    processors
        What derives state from observations, in order (the twin's own:
        :func:`twin.live.processors.default_processors`); none by default.
    listeners
        Called in-process with each batch of events (the API's push hub).
    """

    def __init__(
        self,
        *,
        url: str | None = None,
        publisher: Publisher | None = None,
        processors: Sequence[Processor] | None = None,
        listeners: Sequence[Callable[[list[Event]], None]] = (),
    ):
        self.url = url
        self.publisher = publisher
        self.processors = list(processors or ())
        self.listeners = list(listeners)

    def ingest(self, readings: Sequence[Reading | ReadingError]) -> StoreReport:
        """Store readings, republish what was stored, derive and push the state changes.

        Parameters
        ----------
        readings
            Readings, or the errors that refused rows of them (counted with their position).

        Returns
        -------
        StoreReport
            What was stored, duplicated and refused.
        """
        report = _store(readings, url=self.url)
        if not report.stored:
            return report
        if self.publisher is not None:
            self.publisher.observations(report.stored)
        events: list[Event] = [
            {
                "type": "observation",
                "datastream": o.datastream_id,
                **o.to_json(),
            }
            for o in _newest(report.stored)
        ]
        for processor in self.processors:
            try:
                events.extend(processor.observe(report.stored, url=self.url))
            except Exception:  # one processor's fault must not lose what was stored
                log.exception("live processor %s failed", type(processor).__name__)
        if self.publisher is not None:
            self.publisher.events(events)
        for listener in self.listeners:
            listener(events)
        return report


def _newest(stored: Sequence[StoredObservation]) -> list[StoredObservation]:
    """Keep the newest stored observation of each datastream (what a push stream shows)."""
    newest: dict[int, StoredObservation] = {}
    for obs in stored:
        seen = newest.get(obs.datastream_id)
        if seen is None or seen.phenomenon_time < obs.phenomenon_time:
            newest[obs.datastream_id] = obs
    return list(newest.values())
