"""Live ingest benchmark: observations/s through MQTT and HTTP batches vs the raw COPY limit.

Not a test. Loads the sample city into a scratch database, registers ``--datastreams``
detector datastreams on its roads, then in one run:

1. **raw limit** — ``COPY`` of the same rows straight into ``sta_observations`` (no checks,
   no dedupe, no latest state): the most the store can take;
2. **MQTT flood** — publisher processes (paho-mqtt, QoS 0, as gateways do) send ``--mqtt``
   observations on ``v1.1/Datastreams(<id>)/Observations`` as fast as they can to a running
   ``twin serve``; sustained rate = observations stored / seconds from the first publish to
   the last one stored;
3. **latency** — publishing paced at ``--paced`` observations/s, the time from publish to the
   twin's republication of the stored observation (it republishes after commit, so that is
   publish → readable), p50/p95 on a sample of datastreams;
4. **HTTP batches** — ``POST /v1.1/CreateObservations`` with dataArrays of ``--batch`` rows,
   two clients;
5. **reads under load** — p95 of a vector tile and an items page, idle and during the MQTT
   flood (FROST-Server issue #115 reports a server that stops answering reads during a 100k
   upload).

Usage: ``python bench/live.py [--datastreams 1000] [--mqtt 300000] [--paced 10000]``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import httpx2 as httpx  # noqa: E402
import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from layers.database import database_url, drop_database, get_engine, upgrade  # noqa: E402
from layers.observations import maintain_partitions  # noqa: E402
from twin.live.registry import register  # noqa: E402
from twin.sample import load_sample  # noqa: E402

PREFIX = f"bench_{uuid.uuid4().hex[:8]}/"
PORT = 1883
TILE = "/collections/roads/tiles/WebMercatorQuad/15/11948/17059"
ITEMS = "/collections/buildings/items?limit=100"


def _scratch_url() -> str:
    base = make_url(database_url())
    return base.set(database="twin_bench_live").render_as_string(hide_password=False)


def _rows(ids: list[int], n: int, start: datetime) -> list[tuple[int, datetime, float]]:
    step = timedelta(milliseconds=1)
    return [(ids[k % len(ids)], start + step * k, float(k % 97)) for k in range(n)]


def raw_copy(url: str, ids: list[int], n: int) -> float:
    """COPY n rows straight into sta_observations; return rows/s."""
    rows = _rows(ids, n, datetime.now(UTC) - timedelta(hours=3))
    with get_engine(url).begin() as connection:
        raw = connection.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cur:
            started = time.perf_counter()
            with cur.copy(
                "COPY sta_observations (datastream_id, phenomenon_time, result) FROM STDIN"
            ) as copy:
                for row in rows:
                    copy.write_row(row)
            elapsed = time.perf_counter() - started
            cur.execute("TRUNCATE sta_observations, sta_latest")
    return n / elapsed


def _publisher(
    ids: list[int], n: int, start_ms: int, rate: float | None, ready: Any, go: Any
) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", PORT)
    client.loop_start()
    base = datetime.now(UTC) - timedelta(hours=2)
    topics = [f"{PREFIX}v1.1/Datastreams({d})/Observations" for d in ids]
    ready.set()
    go.wait()
    began = time.perf_counter()
    for k in range(n):
        moment = base + timedelta(milliseconds=start_ms + k)
        payload = (
            f'{{"phenomenonTime":"{moment.isoformat()}","result":{k % 97},'
            f'"parameters":{{"sent":{time.time()}}}}}'
        )
        client.publish(topics[k % len(topics)], payload)
        if rate and k % 100 == 0:
            ahead = k / rate - (time.perf_counter() - began)
            if ahead > 0:
                time.sleep(ahead)
    client.disconnect()
    client.loop_stop()


def _stored(url: str) -> int:
    with get_engine(url).connect() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cur:
            cur.execute("SELECT count(*) FROM sta_observations")
            row = cur.fetchone()
        raw.rollback()
    return int(row[0]) if row else 0


def _truncate(url: str) -> None:
    with get_engine(url).begin() as connection:
        connection.exec_driver_sql("TRUNCATE sta_observations, sta_latest")


def mqtt_flood(url: str, ids: list[int], n: int, publishers: int = 2) -> tuple[float, float]:
    """Flood n observations from several publishers; return (stored/s, seconds)."""
    _truncate(url)
    ready = [mp.Event() for _ in range(publishers)]
    go = mp.Event()
    share = n // publishers
    procs = [
        mp.Process(target=_publisher, args=(ids, share, p * share, None, ready[p], go))
        for p in range(publishers)
    ]
    for proc in procs:
        proc.start()
    for event in ready:
        event.wait(30)
    started = time.perf_counter()
    go.set()
    total = share * publishers
    last, last_change = -1, time.perf_counter()
    while True:
        stored = _stored(url)
        if stored >= total:
            break
        if stored != last:
            last, last_change = stored, time.perf_counter()
        elif time.perf_counter() - last_change > 20:
            print(f"  stalled at {stored:,} of {total:,} stored")
            break
        time.sleep(0.2)
    elapsed = time.perf_counter() - started
    for proc in procs:
        proc.join(60)
    return stored / elapsed, elapsed


def latency(url: str, ids: list[int], n: int, rate: float) -> list[float]:
    """Publish n observations at a paced rate; return publish→republished latencies (s)."""
    _truncate(url)
    sample = ids[:20]
    latencies: list[float] = []
    subscribed = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)

    def on_message(_c: Any, _u: Any, message: Any) -> None:
        body = json.loads(message.payload)
        if "@iot.id" in body:
            latencies.append(time.time() - body["parameters"]["sent"])

    client.on_message = on_message
    client.on_subscribe = lambda *_: subscribed.set()
    client.connect("127.0.0.1", PORT)
    client.loop_start()
    client.subscribe([(f"{PREFIX}v1.1/Datastreams({d})/Observations", 0) for d in sample])
    subscribed.wait(10)
    ready, go = mp.Event(), mp.Event()
    proc = mp.Process(target=_publisher, args=(ids, n, 0, rate, ready, go))
    proc.start()
    ready.wait(30)
    go.set()
    proc.join(n / rate + 60)
    expected = sum(1 for k in range(n) if ids[k % len(ids)] in sample)
    deadline = time.time() + 30
    while len(latencies) < expected and time.time() < deadline:
        time.sleep(0.1)
    client.disconnect()
    client.loop_stop()
    return latencies


def _http_client(address: str, ids: list[int], n: int, batch: int, offset: int) -> None:
    base = datetime.now(UTC) - timedelta(hours=1)
    with httpx.Client(timeout=120) as client:
        for first in range(0, n, batch):
            rows: dict[int, list[list[Any]]] = {}
            for k in range(first, min(first + batch, n)):
                moment = base + timedelta(milliseconds=offset + k)
                rows.setdefault(ids[k % len(ids)], []).append([moment.isoformat(), k % 97])
            body = [
                {
                    "Datastream": {"@iot.id": d},
                    "components": ["phenomenonTime", "result"],
                    "dataArray": data,
                }
                for d, data in rows.items()
            ]
            response = client.post(f"{address}/v1.1/CreateObservations", json=body)
            response.raise_for_status()


def http_batches(address: str, url: str, ids: list[int], n: int, batch: int) -> float:
    """Two clients posting CreateObservations; return stored/s."""
    _truncate(url)
    threads = [
        threading.Thread(target=_http_client, args=(address, ids, n // 2, batch, p * n))
        for p in range(2)
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    return _stored(url) / elapsed


def read_latencies(address: str, seconds: float) -> dict[str, list[float]]:
    """Request a tile and an items page in turn for some seconds; return their latencies."""
    out: dict[str, list[float]] = {"tile": [], "items": []}
    deadline = time.perf_counter() + seconds
    with httpx.Client(timeout=60) as client:
        while time.perf_counter() < deadline:
            for name, path in (("tile", TILE), ("items", ITEMS)):
                began = time.perf_counter()
                client.get(
                    f"{address}{path}", headers={"Cache-Control": "no-cache"}
                ).raise_for_status()
                out[name].append(time.perf_counter() - began)
    return out


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datastreams", type=int, default=1000)
    parser.add_argument("--mqtt", type=int, default=300_000)
    parser.add_argument("--paced", type=float, default=10_000)
    parser.add_argument("--http", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--port", type=int, default=1883, help="Mosquitto's port")
    parser.add_argument("--bridges", type=int, default=1, help="TWIN_LIVE_BRIDGE_PROCESSES")
    args = parser.parse_args()
    global PORT
    PORT = args.port

    url = _scratch_url()
    drop_database(url)
    upgrade(url)
    print("loading the sample city …", flush=True)
    load_sample(directory=ROOT / "data_samples" / "monaco", url=url)
    with get_engine(url).connect() as conn:
        roads = [r[0] for r in conn.exec_driver_sql("SELECT id FROM roads LIMIT 2000")]
    print(f"registering {args.datastreams} datastreams …", flush=True)
    ids = [
        register(
            f"bench-{k}/speed",
            thing=f"bench-{k}",
            observed_property="speed",
            layer="roads",
            feature_id=roads[k % len(roads)],
            url=url,
        )
        for k in range(args.datastreams)
    ]
    maintain_partitions(url=url)
    raw = raw_copy(url, ids, args.mqtt)
    print(f"raw COPY into sta_observations: {raw:,.0f} rows/s", flush=True)

    env = os.environ | {
        "TWIN_DATABASE_URL": url,
        "TWIN_LIVE_TOPIC_PREFIX": PREFIX,
        "TWIN_TILE_CACHE_MB": "0",
        "TWIN_MQTT_URL": f"mqtt://127.0.0.1:{PORT}",
        "TWIN_LIVE_BRIDGE_PROCESSES": str(args.bridges),
    }
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory", "--port", "8765",
             "--log-level", "warning"],
            cwd=ROOT, env=env, stdout=log, stderr=log,
        )  # fmt: skip
        address = "http://127.0.0.1:8765"
        try:
            for _ in range(300):
                try:
                    if httpx.get(f"{address}/live", timeout=2).json()["mqtt"]["connected"]:
                        break
                except (httpx.TransportError, ValueError, KeyError):
                    pass
                time.sleep(0.2)
            idle = read_latencies(address, 8)
            result: dict[str, Any] = {}
            loaded: dict[str, list[float]] = {}
            reader = threading.Thread(
                target=lambda: loaded.update(read_latencies(address, 10)), daemon=True
            )
            reader.start()
            rate, seconds = mqtt_flood(url, ids, args.mqtt)
            reader.join()
            result["mqtt"] = rate
            print(
                f"MQTT flood: {args.mqtt:,} observations stored in {seconds:.1f} s = "
                f"{rate:,.0f}/s ({rate / raw:.0%} of raw COPY)",
                flush=True,
            )
            lat = latency(url, ids, int(args.paced * 15), args.paced)
            print(
                f"MQTT paced at {args.paced:,.0f}/s for 15 s: publish→readable p50 "
                f"{p(lat, 0.5) * 1000:.0f} ms, p95 {p(lat, 0.95) * 1000:.0f} ms "
                f"({len(lat):,} sampled)",
                flush=True,
            )
            try:
                hrate = http_batches(address, url, ids, args.http, args.batch)
                print(
                    f"HTTP CreateObservations ({args.batch} rows a request, 2 clients): "
                    f"{hrate:,.0f}/s ({hrate / raw:.0%} of raw COPY)",
                    flush=True,
                )
            except httpx.HTTPStatusError as exc:
                print(f"HTTP CreateObservations: {exc.response.status_code} {exc.response.text}")
            for name in ("tile", "items"):
                print(
                    f"{name} p95 idle {p(idle[name], 0.95) * 1000:.1f} ms, during the MQTT flood "
                    f"{p(loaded.get(name, []), 0.95) * 1000:.1f} ms "
                    f"({p(loaded.get(name, []), 0.95) / p(idle[name], 0.95):.2f}×; median idle "
                    f"{statistics.median(idle[name]) * 1000:.1f} ms)",
                    flush=True,
                )
        finally:
            server.terminate()
            server.wait(30)
    get_engine(url).dispose()
    drop_database(url)


if __name__ == "__main__":
    main()
