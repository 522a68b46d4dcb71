"""The live twin as a running service: the feed, its MQTT bridge, push and housekeeping.

One :class:`LiveService` runs inside ``twin serve`` (and alone under ``twin live run``): it
connects the :class:`~twin.live.feed.Feed` to the broker (subscribing to the SensorThings
observation topics, republishing what it stores, publishing events), relays the events of
every twin on the broker to in-process listeners (the API's push stream), and every few
seconds does the work no reading triggers: expiring stale live speeds, raising ``no_data``
alerts, and (hourly) creating and dropping observation partitions.

When the broker cannot be reached the service still stores what arrives over HTTP and pushes
its events in-process; it says so in :meth:`LiveService.status` and keeps retrying.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from layers.observations import maintain_partitions
from layers.settings import TwinSettings, get_settings
from twin.live.feed import Event, Feed, Processor
from twin.live.mqtt import Bridge, Broker, BrokerError, EventSubscriber, Publisher, open_client

log = logging.getLogger(__name__)

#: Seconds between housekeeping rounds (stale speeds, no-data alerts).
TICK_S = 5.0
#: Seconds between partition maintenance rounds.
PARTITIONS_S = 3600.0

#: Something to run every housekeeping round: ``task(url=..., now=...)``.
Task = Callable[..., Any]


class LiveService:
    """Run the live twin for one store.

    Parameters
    ----------
    url
        Database URL; the configured one by default.
    settings
        Settings (broker, topic prefix); the environment's by default.
    processors
        What derives live state from stored observations.
    tasks
        Housekeeping run every :data:`TICK_S` seconds, each called as
        ``task(url=url, now=datetime)``.
    """

    def __init__(
        self,
        *,
        url: str | None = None,
        settings: TwinSettings | None = None,
        processors: Sequence[Processor] = (),
        tasks: Sequence[Task] = (),
    ):
        self.settings = settings or get_settings()
        self.url = url or self.settings.database_url
        self.prefix = self.settings.live_topic_prefix
        self.tasks = list(tasks)
        self._listeners: list[Callable[[list[Event]], None]] = []
        self.feed = Feed(url=self.url, processors=processors, listeners=[self._local])
        self.bridge: Bridge | None = None
        self.events: EventSubscriber | None = None
        self.broker_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._publisher_client: Any = None

    def listen(self, listener: Callable[[list[Event]], None]) -> None:
        """Call ``listener`` with each batch of events of any twin on the broker.

        Parameters
        ----------
        listener
            Called from a service thread; it must not block.
        """
        self._listeners.append(listener)

    def _deliver(self, events: list[Event]) -> None:
        for listener in list(self._listeners):
            try:
                listener(events)
            except Exception:
                log.exception("a live listener failed")

    def _local(self, events: list[Event]) -> None:
        # with a broker the events come back through it (for every server); without, directly
        if self.events is None:
            self._deliver(events)

    def start(self) -> None:
        """Connect to the broker (if one is set) and start housekeeping; never raises."""
        if self.settings.mqtt_url:
            try:
                broker = Broker.from_url(self.settings.mqtt_url)
                self._publisher_client = open_client(broker, name="publisher")
                self.feed.publisher = Publisher(self._publisher_client, prefix=self.prefix)
                self.events = EventSubscriber(broker, prefix=self.prefix, deliver=self._deliver)
                self.events.start()
                self.bridge = Bridge(self.feed, broker, prefix=self.prefix)
                self.bridge.start()
            except BrokerError as exc:
                self.broker_error = str(exc)
                log.warning("live twin without MQTT: %s", exc)
                self._stop_mqtt()
        self._thread = threading.Thread(target=self._housekeeping, name="live-tasks", daemon=True)
        self._thread.start()

    def _stop_mqtt(self) -> None:
        for part in (self.bridge, self.events):
            if part is not None:
                part.stop()
        if self._publisher_client is not None:
            self._publisher_client.disconnect()
            self._publisher_client.loop_stop()
        self.bridge = self.events = self._publisher_client = None
        self.feed.publisher = None

    def stop(self) -> None:
        """Stop the bridge (feeding what it holds), the housekeeping and the clients."""
        self._stop.set()
        self._stop_mqtt()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _housekeeping(self) -> None:
        last_partitions = 0.0
        while not self._stop.is_set():
            now = datetime.now(UTC)
            try:
                if now.timestamp() - last_partitions >= PARTITIONS_S:
                    maintain_partitions(url=self.url, now=now)
                    last_partitions = now.timestamp()
                events: list[Event] = []
                for task in self.tasks:
                    events.extend(task(url=self.url, now=now) or [])
                if events:
                    if self.feed.publisher is not None:
                        self.feed.publisher.events(events)
                    else:
                        self._deliver(events)
            except Exception as exc:  # the store may be restarting: try again next round
                log.warning("live housekeeping failed: %s", exc)
            self._stop.wait(TICK_S)

    def status(self) -> dict[str, Any]:
        """Return the service's state: broker, bridge counters.

        Returns
        -------
        dict
            ``mqtt`` (connected or the error), ``topic_prefix``, ``bridge`` counters.
        """
        return {
            "mqtt": {
                "url": self.settings.mqtt_url or None,
                "connected": bool(self.bridge and self.bridge.client.is_connected()),  # type: ignore[union-attr]
                "error": self.broker_error,
            },
            "topic_prefix": self.prefix,
            "bridge": self.bridge.stats.to_json() if self.bridge else None,
        }
