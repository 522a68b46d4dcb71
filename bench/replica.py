"""Read-replica benchmark: replication lag seen through the API, and read throughput with and
without the replica (issue 14 part 4).

Not a test. Loads the sample city into a scratch database (``twin_scratch_replica_bench``),
starts a streaming replica of the server with ``scripts/replica.sh`` (a free port, its data in
a temporary folder, removed afterwards) and serves the database twice, one uvicorn worker each:

- ``primary``: the API reading and writing the primary only (the peer);
- ``replica``: the same API with ``TWIN_DATABASE_READ_URLS`` naming the replica.

Figures, in the same run:

- lag: a feature written on the primary by this process (another process than the API, so
  the API's read-your-writes rule does not send the read to the primary), then polled through
  the ``replica`` API until it answers 200: p50/p95 of commit -> first 200, ms; beside it the
  same lag polled straight on the replica in SQL (finer: no HTTP round trip), and one GET of a
  feature through each API (the floor of what the API poll can resolve);
- read throughput through the API: features pages (roads, buildings) from N client threads,
  requests/s for ``primary`` and ``replica``, and their ratio;
- read throughput at the database: the same read query from N threads through
  ``layers.database.cursor``, primary only vs routed to the replica.

The issue sets no number for the replica: "an edit is visible through the API within the
replica's lag (measure it)". On one machine the replica shares the primary's cores, so a
throughput gain is not expected here; the ratio says what the routing costs or saves.

Usage: ``python bench/replica.py [--writes 40] [--seconds 5] [--clients 8] [--rounds 3]``.
Writes its figures as markdown to ``/tmp/bench_sections/replica.md``.
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from layers import editing  # noqa: E402
from layers.database import cursor, database_url, drop_database, set_read_urls, upgrade  # noqa: E402
from twin.sample import load_sample  # noqa: E402

SCRIPT = ROOT / "scripts" / "replica.sh"
SECTION = Path("/tmp/bench_sections/replica.md")
HERE_POINT = {"type": "Point", "coordinates": [7.4246, 43.7384]}  # Monaco


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def libpq(url: str) -> str:
    """A SQLAlchemy URL as a libpq one."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@contextmanager
def replica_of(primary: str) -> Iterator[tuple[int, Callable[[str], None]]]:
    """Run a replica of ``primary``'s server (scripts/replica.sh); yield its port and a runner."""
    folder = Path(tempfile.mkdtemp(prefix="twin_replica_bench_"))
    folder.chmod(0o755)
    base = make_url(primary)
    port = free_port()
    env = os.environ | {
        "REPLICA_PORT": str(port),
        "REPLICA_DIR": str(folder / "data"),
        "PRIMARY_HOST": base.host or "127.0.0.1",
        "PRIMARY_PORT": str(base.port or 5432),
        "PRIMARY_USER": base.username or "postgres",
    }

    def run(action: str) -> None:
        subprocess.run(["bash", str(SCRIPT), action], env=env, check=True, capture_output=True)

    try:
        run("start")
        yield port, run
    finally:
        try:
            run("remove")
        finally:
            shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def api(url: str, env: dict[str, str]) -> Iterator[str]:
    """Serve the API over ``url`` (one uvicorn worker); yield its address."""
    port = free_port()
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory"),
            *("--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"),
        ],
        cwd=ROOT,
        env=os.environ
        | {
            "TWIN_DATABASE_URL": url,
            "TWIN_MQTT_URL": "",
            "TWIN_AUTH_ANONYMOUS_ROLE": "administrator",
            "TWIN_AUDIT": "false",
            **env,
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    address = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(f"{address}/health", timeout=2).close()
                break
            except OSError:
                if process.poll() is not None:
                    raise SystemExit(f"the API exited with {process.returncode}") from None
                time.sleep(0.1)
        else:
            raise SystemExit("the API did not answer /health")
        yield address
    finally:
        process.terminate()
        process.wait(timeout=30)


def status(connection: http.client.HTTPConnection, path: str) -> int:
    """GET ``path`` on a kept-alive connection; return the status (body read and dropped)."""
    connection.request("GET", path)
    response = connection.getresponse()
    response.read()
    return response.status


def p50_p95(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def lag(url: str, address: str, replica_url: str, writes: int) -> dict[str, list[float]]:
    """Commit -> visible, ms: through the API (HTTP poll) and on the replica (SQL poll)."""
    host, port = address.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    found: dict[str, list[float]] = {"api": [], "sql": []}
    with psycopg.connect(libpq(replica_url), autocommit=True) as replica:
        for i in range(writes):
            for how in ("api", "sql"):
                feature_id = f"lag-{how}-{i}-{time.time_ns()}"
                feature = {
                    "type": "Feature",
                    "id": feature_id,
                    "geometry": HERE_POINT,
                    "properties": {"kind": "fire", "severity": 1, "status": "open"},
                }
                editing.create("incidents", feature, url=url)
                committed = time.perf_counter()
                deadline = committed + 30
                while time.perf_counter() < deadline:
                    if how == "api":
                        seen = status(connection, f"/collections/incidents/items/{feature_id}")
                        if seen == 200:
                            break
                    else:
                        row = replica.execute(
                            "SELECT 1 FROM incidents WHERE id = %s", (feature_id,)
                        ).fetchone()
                        if row is not None:
                            break
                else:
                    raise SystemExit(f"{feature_id} not visible after 30 s ({how})")
                found[how].append((time.perf_counter() - committed) * 1000)
    connection.close()
    return found


def one_get_ms(address: str, feature_id: str, repeat: int = 200) -> float:
    """Median time of one GET of a feature through an API, ms."""
    host, port = address.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        assert status(connection, f"/collections/incidents/items/{feature_id}") == 200
        times.append((time.perf_counter() - start) * 1000)
    connection.close()
    return statistics.median(times)


PAGES = [
    f"/collections/{layer}/items?limit=50&offset={offset}"
    for layer in ("roads", "buildings")
    for offset in range(0, 1000, 100)
]


def _in_threads(client: Callable[[int], None], clients: int) -> float:
    """Run ``client(k)`` for every k below ``clients``, each in a thread; return seconds."""
    start = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - start


def http_rate(address: str, clients: int, seconds: float) -> float:
    """Requests/s of features pages from ``clients`` threads for ``seconds``."""
    host, port = address.removeprefix("http://").split(":")
    counts = [0] * clients
    failures: list[str] = []
    stop = time.perf_counter() + seconds

    def client(k: int) -> None:
        connection = http.client.HTTPConnection(host, int(port), timeout=60)
        i = k
        while time.perf_counter() < stop:
            path = PAGES[i % len(PAGES)]
            code = status(connection, path)
            if code != 200:
                failures.append(f"{path}: {code}")
                return
            counts[k] += 1
            i += clients
        connection.close()

    elapsed = _in_threads(client, clients)
    if failures:
        raise SystemExit(f"non-200 answers: {failures[:3]}")
    return sum(counts) / elapsed


QUERY = (
    "SELECT count(*), sum(ST_Length(geom::geography)) FROM roads "
    "WHERE geom && ST_MakeEnvelope(%s, 43.72, %s + 0.02, 43.75, 4326)"
)


def sql_rate(url: str, clients: int, seconds: float) -> float:
    """Queries/s of a read through ``layers.database.cursor`` from ``clients`` threads."""
    counts = [0] * clients
    stop = time.perf_counter() + seconds

    def client(k: int) -> None:
        i = k
        while time.perf_counter() < stop:
            west = 7.40 + (i % 5) * 0.01
            with cursor(url) as cur:
                cur.execute(QUERY, (west, west))
                cur.fetchall()
            counts[k] += 1
            i += clients

    return sum(counts) / _in_threads(client, clients)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--writes", type=int, default=40, help="writes timed for the lag")
    parser.add_argument("--seconds", type=float, default=5, help="length of a throughput run")
    parser.add_argument("--clients", type=int, default=8, help="client threads")
    parser.add_argument("--rounds", type=int, default=3, help="throughput runs per setting")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]

    base = make_url(database_url(os.environ.get("TWIN_DATABASE_URL")))
    url = base.set(database="twin_scratch_replica_bench").render_as_string(hide_password=False)
    drop_database(url)
    upgrade(url)
    load_sample(url=url)
    try:
        with replica_of(url) as (port, _run):
            replica_url = make_url(url).set(port=port).render_as_string(hide_password=False)
            read_url = f"postgresql://{base.username or 'postgres'}@127.0.0.1:{port}"
            with (
                api(url, {}) as primary_api,
                api(url, {"TWIN_DATABASE_READ_URLS": read_url}) as replica_api,
            ):
                print(f"primary API {primary_api}, replica API {replica_api}, replica :{port}")
                found = lag(url, replica_api, replica_url, args.writes)
                probe = {
                    "type": "Feature",
                    "id": "probe",
                    "geometry": HERE_POINT,
                    "properties": {"kind": "fire", "severity": 1, "status": "open"},
                }
                editing.create("incidents", probe, url=url)
                time.sleep(0.5)  # bench only: let the replica replay the probe before timing
                get_primary = one_get_ms(primary_api, "probe")
                get_replica = one_get_ms(replica_api, "probe")
                rates: dict[str, list[float]] = {"primary": [], "replica": []}
                for _ in range(args.rounds):
                    rates["primary"].append(http_rate(primary_api, args.clients, args.seconds))
                    rates["replica"].append(http_rate(replica_api, args.clients, args.seconds))
            sql: dict[str, list[float]] = {"primary": [], "replica": []}
            for _ in range(args.rounds):
                set_read_urls(url, [])
                sql["primary"].append(sql_rate(url, args.clients, args.seconds))
                set_read_urls(url, [read_url])
                sql["replica"].append(sql_rate(url, args.clients, args.seconds))
            set_read_urls(url, None)
    finally:
        drop_database(url)

    api_p50, api_p95 = p50_p95(found["api"])
    sql_p50, sql_p95 = p50_p95(found["sql"])
    http_primary = statistics.median(rates["primary"])
    http_replica = statistics.median(rates["replica"])
    db_primary = statistics.median(sql["primary"])
    db_replica = statistics.median(sql["replica"])
    lines = [
        "## Read replica (bench/replica.py)",
        "",
        f"Sample city, one uvicorn worker per API, {os.cpu_count()} cores shared by the primary, "
        f"the replica, the APIs and the clients (load average {load_before:.1f} before the run: "
        f"other work on the machine); {args.writes} writes timed per lag figure; "
        f"throughput {args.clients} client threads, median of {args.rounds} x "
        f"{args.seconds:g} s runs.",
        "",
        "| figure | value |",
        "| --- | --- |",
        f"| lag, write on the primary -> 200 through the API, p50 / p95 | "
        f"{api_p50:.1f} / {api_p95:.1f} ms |",
        f"| lag, write on the primary -> row on the replica (SQL poll), p50 / p95 | "
        f"{sql_p50:.2f} / {sql_p95:.2f} ms |",
        f"| one GET of a feature, primary-only API / replica API (p50) | "
        f"{get_primary:.2f} / {get_replica:.2f} ms |",
        f"| features pages through the API, primary only | {http_primary:,.0f} req/s |",
        f"| features pages through the API, reads on the replica | {http_replica:,.0f} req/s "
        f"({http_replica / http_primary:.2f}x) |",
        f"| read query via `cursor()`, primary only | {db_primary:,.0f} q/s |",
        f"| read query via `cursor()`, on the replica | {db_replica:,.0f} q/s "
        f"({db_replica / db_primary:.2f}x) |",
        "",
        "Goal (issue 14): an edit visible through the API within the replica's lag, and reads "
        "answered with the replica stopped (tests/api/test_replica.py) — "
        f"**met**: the API shows a primary write {api_p50:.1f} ms (p50) after its commit, "
        f"the replica itself {sql_p50:.2f} ms. Throughput: no goal; on one machine the replica "
        "takes no CPU off the primary's cores, so the ratio measures the routing's cost "
        f"({http_replica / http_primary:.2f}x through the API, {db_replica / db_primary:.2f}x "
        "at the database), not a gain; the gain comes with a replica on another machine.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    SECTION.parent.mkdir(parents=True, exist_ok=True)
    SECTION.write_text(text)
    print(f"[bench] wrote {SECTION}")


if __name__ == "__main__":
    main()
