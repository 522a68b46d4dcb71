"""The twin on MQTT: SensorThings' MQTT extension in, republished observations and events out.

Sensors and gateways publish an Observation (SensorThings JSON) on
``<prefix>v1.1/Datastreams(<id>)/Observations`` (or on ``<prefix>v1.1/Observations`` with the
Datastream in the body), as OGC 18-088 section 14.2 ("Create an Observation") writes it. The
:class:`Bridge` subscribes to both, batches what arrives (up to ``max_batch`` readings or
``max_wait_s``) and hands each batch to a :class:`~twin.live.feed.Feed`. The
:class:`Publisher` republishes what the feed stored on the same topics, with its ``@iot.id``
(what FROST-Server does for subscribers), and the feed's events on ``<prefix>twin/events``
(a JSON array per batch) for every server's push stream.

The bridge subscribes with MQTT 5's *No Local* option, so the twin never receives its own
republished observations; a message already carrying an ``@iot.id`` (another twin's
republication) is skipped too. Uses paho-mqtt (Eclipse Paho).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from layers.errors import ParameterError
from layers.observations import (
    Reading,
    ReadingError,
    StoredObservation,
    StoreReport,
    reading_from_json,
)
from twin.live.feed import Event, Feed

log = logging.getLogger(__name__)

#: How long a batch waits for a store that does not answer before it is given up, s.
STORE_RETRY_S = 120.0
#: Topic of the events the push streams relay (after the prefix).
EVENTS_TOPIC = "twin/events"


class BrokerError(ParameterError):
    """An MQTT broker URL that cannot be used, or a broker that does not answer."""


@dataclass(frozen=True)
class Broker:
    """Where the broker is: ``mqtt://[user:password@]host[:port]`` (port 1883 by default)."""

    host: str
    port: int
    username: str | None = None
    password: str | None = None

    @classmethod
    def from_url(cls, url: str) -> Broker:
        """Parse a broker URL.

        Parameters
        ----------
        url
            ``mqtt://host:port``; ``tcp://`` is taken as a synonym.

        Returns
        -------
        Broker
            The broker.

        Raises
        ------
        BrokerError
            If the URL is not an ``mqtt://`` URL with a host.
        """
        parsed = urlparse(url)
        if parsed.scheme not in ("mqtt", "tcp") or not parsed.hostname:
            raise BrokerError(f"{url!r} is not an mqtt://host:port URL", parameter="mqtt_url")
        try:
            port = parsed.port or 1883
        except ValueError as exc:
            raise BrokerError(f"{url!r}: {exc}", parameter="mqtt_url") from None
        return cls(parsed.hostname, port, parsed.username, parsed.password)


def observation_topic(datastream_id: int, *, prefix: str = "") -> str:
    """Return the topic of a datastream's observations.

    Parameters
    ----------
    datastream_id
        The Datastream's ``@iot.id``.
    prefix
        The twin's topic prefix (``TWIN_LIVE_TOPIC_PREFIX``).

    Returns
    -------
    str
        ``<prefix>v1.1/Datastreams(<id>)/Observations``.
    """
    return f"{prefix}v1.1/Datastreams({datastream_id})/Observations"


def open_client(
    broker: Broker,
    *,
    name: str = "client",
    subscriptions: Sequence[tuple[str, SubscribeOptions]] = (),
    on_message: Callable[[mqtt.Client, Any, mqtt.MQTTMessage], None] | None = None,
    timeout_s: float = 10.0,
) -> mqtt.Client:
    """Connect an MQTT 5 client, subscribe, and run its network loop in a thread.

    The client reconnects by itself when the broker goes away and comes back, and subscribes
    again each time.

    Parameters
    ----------
    broker
        The broker.
    name
        Part of the client id (``citytwin-<name>-<random>``).
    subscriptions
        Topic filters with their options.
    on_message
        Called in the network thread for each message.
    timeout_s
        How long to wait for the connection (and the subscriptions).

    Returns
    -------
    paho.mqtt.client.Client
        The connected client.

    Raises
    ------
    BrokerError
        If the broker does not accept the connection (or the subscriptions) in time.
    """
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"citytwin-{name}-{uuid.uuid4().hex[:12]}",
        protocol=mqtt.MQTTv5,
    )
    if broker.username:
        client.username_pw_set(broker.username, broker.password)
    client.max_queued_messages_set(0)
    client.reconnect_delay_set(min_delay=1, max_delay=10)
    ready = threading.Event()

    def on_connect(
        client: mqtt.Client,
        _userdata: Any,
        _flags: Any,
        reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            return
        if subscriptions:
            client.subscribe(list(subscriptions))
        else:
            ready.set()

    client.on_connect = on_connect
    client.on_subscribe = lambda *_: ready.set()
    if on_message is not None:
        client.on_message = on_message
    where = f"the MQTT broker at {broker.host}:{broker.port}"
    try:
        client.connect(broker.host, broker.port, keepalive=30)
    except OSError as exc:
        raise BrokerError(f"{where} does not answer: {exc}", parameter="mqtt_url") from None
    client.loop_start()
    if not ready.wait(timeout_s):
        client.loop_stop()
        client.disconnect()
        raise BrokerError(
            f"{where} did not accept the connection within {timeout_s:g} s", parameter="mqtt_url"
        )
    return client


class Publisher:
    """Republish stored observations and publish events (a :class:`twin.live.feed.Publisher`).

    Parameters
    ----------
    client
        A connected client (:func:`connect`).
    prefix
        The twin's topic prefix.
    """

    def __init__(self, client: mqtt.Client, *, prefix: str = ""):
        self.client = client
        self.prefix = prefix

    def observations(self, stored: Sequence[StoredObservation]) -> None:
        """Publish each stored observation on its datastream's topic (QoS 0).

        Parameters
        ----------
        stored
            Observations as stored, with their ids.
        """
        for obs in stored:
            self.client.publish(
                observation_topic(obs.datastream_id, prefix=self.prefix),
                json.dumps(obs.to_json(), separators=(",", ":")),
            )

    def events(self, events: Sequence[Event]) -> None:
        """Publish a batch of events as one JSON array on ``<prefix>twin/events`` (QoS 1).

        Parameters
        ----------
        events
            The events.
        """
        if events:
            self.client.publish(
                self.prefix + EVENTS_TOPIC,
                json.dumps(list(events), separators=(",", ":"), default=str),
                qos=1,
            )


#: The counters a bridge keeps.
COUNTERS = ("received", "stored", "duplicates", "refused", "batches", "skipped_own", "failures")


class BridgeStats:
    """What a bridge has done since it started: counters, optionally in shared memory.

    Parameters
    ----------
    shared
        A ``multiprocessing.Array('q', len(COUNTERS))`` when the bridge runs in another
        process than its readers (one writer: the bridge); a private list by default.
    """

    def __init__(self, shared: Any = None):
        self._values: Any = shared if shared is not None else [0] * len(COUNTERS)

    def add(self, name: str, count: int = 1) -> None:
        """Add to a counter.

        Parameters
        ----------
        name
            One of :data:`COUNTERS`.
        count
            How much.
        """
        self._values[COUNTERS.index(name)] += count

    def __getitem__(self, name: str) -> int:
        return int(self._values[COUNTERS.index(name)])

    def to_json(self) -> dict[str, int]:
        """Return the counters as a JSON object."""
        return {name: int(self._values[i]) for i, name in enumerate(COUNTERS)}


class Bridge:
    """Subscribe to the SensorThings observation topics and feed what arrives, in batches.

    Parameters
    ----------
    feed
        Where readings go.
    broker
        The broker.
    prefix
        The twin's topic prefix.
    max_batch
        Most readings handed to the feed at once.
    max_wait_s
        Longest a reading waits for its batch to fill (the latency it adds).
    stats
        Where to count; private counters by default.
    group
        Share the subscription with the other bridges of this group (several processes
        storing one feed); a subscription of its own by default.
    """

    def __init__(
        self,
        feed: Feed,
        broker: Broker,
        *,
        prefix: str = "",
        max_batch: int = 5000,
        max_wait_s: float = 0.05,
        stats: BridgeStats | None = None,
        group: str | None = None,
    ):
        self.feed = feed
        self.broker = broker
        self.prefix = prefix
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.stats = stats or BridgeStats()
        self.group = group
        self._pattern = re.compile(
            re.escape(prefix) + r"v1\.1/(?:Datastreams\((?P<id>[0-9]{1,18})\)/)?Observations"
        )
        self._queue: deque[tuple[str, bytes]] = deque()
        self._ready = threading.Condition()
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self.client: mqtt.Client | None = None

    def start(self, *, timeout_s: float = 10.0) -> None:
        """Connect, subscribe and start batching.

        Parameters
        ----------
        timeout_s
            How long to wait for the broker.

        Raises
        ------
        BrokerError
            If the broker does not answer.
        """
        filters = (f"{self.prefix}v1.1/+/Observations", f"{self.prefix}v1.1/Observations")
        if self.group:
            # a shared subscription (MQTT 5, 4.8.2): the broker hands each reading to one
            # bridge of the group; No Local is not allowed on one, so the twins' own
            # republications come back and are dropped here, before they are decoded
            topics = [(f"$share/{self.group}/{f}", SubscribeOptions(qos=1)) for f in filters]
        else:
            topics = [(f, SubscribeOptions(qos=1, noLocal=True)) for f in filters]

        def on_message(_client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
            payload = message.payload
            if payload.startswith(b'{"@iot.id":'):  # as Publisher writes them
                self.stats.add("skipped_own")
                return
            with self._ready:
                self._queue.append((message.topic, bytes(payload)))
                # wake the worker for a batch's first reading (it then waits up to max_wait_s
                # for the batch to fill) and for a full batch
                if len(self._queue) in (1, self.max_batch):
                    self._ready.notify()

        self.client = open_client(
            self.broker,
            name="bridge",
            subscriptions=topics,
            on_message=on_message,
            timeout_s=timeout_s,
        )
        self._worker = threading.Thread(target=self._run, name="mqtt-bridge", daemon=True)
        self._worker.start()

    def stop(self) -> None:
        """Stop receiving, feed what is queued, disconnect."""
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()
        self._stop.set()
        with self._ready:
            self._ready.notify()
        if self._worker is not None:
            self._worker.join(timeout=30)

    def _take(self) -> list[tuple[str, bytes]]:
        with self._ready:
            if not self._queue and not self._stop.is_set():
                self._ready.wait(timeout=1.0)
            if not self._queue:
                return []
        # let a batch fill for up to max_wait_s unless it is full already
        deadline = time.monotonic() + self.max_wait_s
        with self._ready:
            while len(self._queue) < self.max_batch and not self._stop.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._ready.wait(timeout=left)
            count = min(len(self._queue), self.max_batch)
            return [self._queue.popleft() for _ in range(count)]

    def _run(self) -> None:
        while True:
            batch = self._take()
            if not batch:
                if self._stop.is_set():
                    return
                continue
            readings = self.decode(batch)
            if not readings:
                continue
            report = self._ingest(readings)
            if report is None:
                continue
            self.stats.add("batches")
            self.stats.add("stored", len(report.stored))
            self.stats.add("duplicates", report.duplicates)
            self.stats.add("refused", report.refused_count)

    def _ingest(self, readings: list[Reading | ReadingError]) -> StoreReport | None:
        """Feed a batch; while the store cannot be reached, keep it and try again.

        Readings wait up to :data:`STORE_RETRY_S` for a store that is restarting (the broker
        queues what arrives meanwhile, up to its limit); then the batch is counted as a
        failure and logged.
        """
        waited, delay = 0.0, 0.5
        while True:
            try:
                return self.feed.ingest(readings)
            except psycopg.OperationalError as exc:
                if waited >= STORE_RETRY_S or self._stop.is_set():
                    self.stats.add("failures")
                    log.error("live feed lost %d readings: the store: %s", len(readings), exc)
                    return None
                log.warning("live feed: the store does not answer, retrying: %s", exc)
            except Exception as exc:  # a fault of the twin's own: count it, keep serving
                self.stats.add("failures")
                log.exception("live feed could not store %d readings: %s", len(readings), exc)
                return None
            self._stop.wait(delay)
            waited += delay
            delay = min(delay * 2, 5.0)

    def decode(self, batch: Sequence[tuple[str, bytes]]) -> list[Reading | ReadingError]:
        """Turn MQTT messages into readings, or the errors that refuse them.

        Parameters
        ----------
        batch
            ``(topic, payload)`` pairs.

        Returns
        -------
        list
            A :class:`Reading` or :class:`ReadingError` per message that is not the twin's
            own republication.
        """
        out: list[Reading | ReadingError] = []
        for topic, payload in batch:
            self.stats.add("received")
            match = self._pattern.fullmatch(topic)
            if match is None:
                out.append(
                    ReadingError(
                        f"topic {topic[:80]!r} is not a SensorThings Observations topic",
                        reason="bad topic",
                        parameter="topic",
                    )
                )
                continue
            try:
                body = json.loads(payload)
            except (UnicodeDecodeError, ValueError):
                out.append(
                    ReadingError(
                        f"the message on {topic[:80]} is not JSON",
                        reason="not JSON",
                        parameter="payload",
                    )
                )
                continue
            if isinstance(body, dict) and "@iot.id" in body:
                self.stats.add("skipped_own")  # a twin's republication, not a new reading
                continue
            ident = match.group("id")
            try:
                out.append(reading_from_json(body, datastream_id=int(ident) if ident else None))
            except ReadingError as exc:
                out.append(exc)
        return out


class EventSubscriber:
    """Receive the twin's events (``<prefix>twin/events``) and hand each batch to a callback.

    Parameters
    ----------
    broker
        The broker.
    prefix
        The twin's topic prefix.
    deliver
        Called (in the MQTT thread) with each batch of events.
    """

    def __init__(self, broker: Broker, *, prefix: str = "", deliver: Callable[[list[Event]], None]):
        self.broker = broker
        self.topic = prefix + EVENTS_TOPIC
        self.deliver = deliver
        self.client: mqtt.Client | None = None

    def start(self, *, timeout_s: float = 10.0) -> None:
        """Connect and subscribe.

        Parameters
        ----------
        timeout_s
            How long to wait for the broker.

        Raises
        ------
        BrokerError
            If the broker does not answer.
        """

        def on_message(_client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
            try:
                events = json.loads(message.payload)
            except ValueError:
                log.warning("an event message on %s is not JSON", self.topic)
                return
            if isinstance(events, list):
                self.deliver([e for e in events if isinstance(e, dict)])

        self.client = open_client(
            self.broker,
            name="events",
            subscriptions=[(self.topic, SubscribeOptions(qos=1))],
            on_message=on_message,
            timeout_s=timeout_s,
        )

    def stop(self) -> None:
        """Disconnect."""
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()
