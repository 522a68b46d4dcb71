"""Clients of the live twin for the tests: a sensor gateway on MQTT, an SSE stream reader."""

from __future__ import annotations

import json
import threading
from typing import Any

import httpx2 as httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.subscribeoptions import SubscribeOptions

from tests.conditions import wait_until


class Stream:
    """An SSE client in a thread, keeping every event it receives."""

    def __init__(self, url: str):
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._run, args=(url,), daemon=True)
        self._thread.start()
        wait_until(lambda: ": connected" in self.lines, timeout_s=30, what="the stream to open")

    def _run(self, url: str) -> None:
        kind = "message"
        try:
            with httpx.Client(timeout=None) as client, client.stream("GET", url) as response:
                for line in response.iter_lines():
                    self.lines.append(line)
                    if line.startswith("event: "):
                        kind = line[7:]
                    elif line.startswith("data: "):
                        self.events.append((kind, json.loads(line[6:])))
        except httpx.TransportError:
            pass  # the server went away at the end of the test: the stream ends

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [data for k, data in self.events if k == kind]


class Gateway:
    """A sensor gateway on the broker: publishes readings, records what the twin republishes."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_message = lambda _c, _u, m: self.received.append(
            (m.topic, json.loads(m.payload))
        )
        self.client.connect("127.0.0.1", 1883)
        self.client.loop_start()
        # No Local: the gateway hears what the twin republishes, not its own messages
        self.client.subscribe(
            f"{prefix}v1.1/+/Observations", options=SubscribeOptions(qos=1, noLocal=True)
        )
        wait_until(subscribed.is_set, timeout_s=10, what="the gateway's subscription")

    def publish(self, datastream: int | None, payload: Any) -> None:
        topic = (
            f"{self.prefix}v1.1/Datastreams({datastream})/Observations"
            if datastream is not None
            else f"{self.prefix}v1.1/Observations"
        )
        body = payload if isinstance(payload, bytes | str) else json.dumps(payload)
        self.client.publish(topic, body, qos=1).wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
