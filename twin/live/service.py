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
import multiprocessing as mp
import threading
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from layers.observations import maintain_partitions
from layers.settings import TwinSettings, get_settings
from twin.live import traffic, vehicles
from twin.live.alerts import AlertRules
from twin.live.feed import Event, Feed, Processor
from twin.live.mqtt import (
    COUNTERS,
    Bridge,
    BridgeStats,
    Broker,
    BrokerError,
    EventSubscriber,
    Publisher,
    open_client,
)
from twin.live.processors import default_processors

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
    bridge_process
        Run the MQTT bridge (decoding, storing, deriving state) in a process of its own, with
        the twin's own processors, so a flood of readings never holds the API's interpreter
        (FROST-Server issue #115: reads stalled by an upload); in a thread of this process,
        with ``processors``, when False.
    """

    def __init__(
        self,
        *,
        url: str | None = None,
        settings: TwinSettings | None = None,
        processors: Sequence[Processor] = (),
        tasks: Sequence[Task] = (),
        bridge_process: bool = False,
    ):
        self.settings = settings or get_settings()
        self.url = url or self.settings.database_url
        self.prefix = self.settings.live_topic_prefix
        self.tasks = list(tasks)
        self.bridge_process = bridge_process
        self._listeners: list[Callable[[list[Event]], None]] = []
        self.feed = Feed(url=self.url, processors=processors, listeners=[self._local])
        self.bridge: Bridge | None = None
        self.processes: list[Any] = []
        self.stats: BridgeStats | None = None
        self._process_stop: Any = None
        self.events: EventSubscriber | None = None
        self.broker_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._publisher_client: Any = None

    @classmethod
    def default(
        cls, *, url: str | None = None, settings: TwinSettings | None = None
    ) -> LiveService:
        """Return the twin's own service: road speeds, vehicle positions and alert rules.

        Parameters
        ----------
        url
            Database URL; the configured one by default.
        settings
            Settings; the environment's by default.

        Returns
        -------
        LiveService
            Not yet started.
        """
        rules = AlertRules()

        def tick(*, url: str | None, now: datetime) -> list[Event]:
            return rules.tick(now, url=url)

        return cls(
            url=url,
            settings=settings,
            processors=[*default_processors(), rules],
            tasks=[traffic.expire, vehicles.expire, tick],
            bridge_process=True,
        )

    def publish(self, events: list[Event]) -> None:
        """Send events to every push stream (through the broker when there is one).

        Parameters
        ----------
        events
            The events (an alert acknowledged by an operator, say).
        """
        if self.feed.publisher is not None:
            self.feed.publisher.events(events)
        else:
            self._deliver(events)

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
                if self.bridge_process:
                    self._start_process()
                else:
                    self.bridge = Bridge(self.feed, broker, prefix=self.prefix)
                    self.bridge.start()
                    self.stats = self.bridge.stats
            except BrokerError as exc:
                self.broker_error = str(exc)
                log.warning("live twin without MQTT: %s", exc)
                self._stop_mqtt()
        self._thread = threading.Thread(target=self._housekeeping, name="live-tasks", daemon=True)
        self._thread.start()

    def _start_process(self) -> None:
        context = mp.get_context("spawn")  # never fork a process that runs threads
        count = self.settings.live_bridge_processes
        group = f"citytwin-{uuid.uuid4().hex[:8]}" if count > 1 else None
        counters = [context.Array("q", len(COUNTERS), lock=False) for _ in range(count)]
        self._process_stop = context.Event()
        errors = context.SimpleQueue()
        readies = []
        for n in range(count):
            ready = context.Event()
            process = context.Process(
                target=_bridge_main,
                args=(
                    self.url,
                    self.settings.model_dump(),
                    counters[n],
                    group,
                    ready,
                    self._process_stop,
                    errors,
                ),
                name=f"twin-live-bridge-{n}",
                daemon=True,
            )
            process.start()
            self.processes.append(process)
            readies.append(ready)
        self.stats = _Summed([BridgeStats(c) for c in counters])
        while not all(r.is_set() for r in readies):
            if not errors.empty():
                raise BrokerError(errors.get(), parameter="mqtt_url")
            dead = [p for p in self.processes if not p.is_alive()]
            if dead:
                raise BrokerError(
                    f"the live bridge process exited with {dead[0].exitcode}",
                    parameter="mqtt_url",
                )
            readies[0].wait(0.1)

    def _stop_mqtt(self) -> None:
        if self.processes:
            self._process_stop.set()
            for process in self.processes:
                process.join(timeout=30)
                if process.is_alive():
                    process.kill()
            self.processes = []
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
                    self.publish(events)
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
        if self.processes:
            connected = all(p.is_alive() for p in self.processes)
        else:
            connected = bool(
                self.bridge and self.bridge.client and self.bridge.client.is_connected()
            )
        return {
            "mqtt": {
                "url": self.settings.mqtt_url or None,
                "connected": connected,
                "error": self.broker_error,
            },
            "topic_prefix": self.prefix,
            "bridge": self.stats.to_json() if self.stats else None,
        }


class _Summed(BridgeStats):
    """The counters of several bridges, added up."""

    def __init__(self, parts: list[BridgeStats]):
        super().__init__()
        self.parts = parts

    def to_json(self) -> dict[str, int]:
        totals = {name: 0 for name in COUNTERS}
        for part in self.parts:
            for name, value in part.to_json().items():
                totals[name] += value
        return totals


def _bridge_main(
    url: str,
    settings: dict[str, Any],
    counters: Any,
    group: str | None,
    ready: Any,
    stop: Any,
    errors: Any,
) -> None:
    """Run the MQTT bridge with the twin's processors until ``stop`` is set (a child process)."""
    logging.basicConfig(level=logging.WARNING)
    config = TwinSettings(**settings)
    rules = AlertRules()
    feed = Feed(url=url, processors=[*default_processors(), rules])
    try:
        broker = Broker.from_url(config.mqtt_url)
        client = open_client(broker, name="publisher")
        feed.publisher = Publisher(client, prefix=config.live_topic_prefix)
        bridge = Bridge(
            feed,
            broker,
            prefix=config.live_topic_prefix,
            stats=BridgeStats(counters),
            group=group,
        )
        bridge.start()
    except BrokerError as exc:
        errors.put(str(exc))
        return
    ready.set()
    stop.wait()
    bridge.stop()
    client.disconnect()
    client.loop_stop()
