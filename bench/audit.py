"""Audit benchmark: what recording an access costs a request, and how fast the log is written.

Not a test. Loads the sample city into a scratch database (``<name>_bench_audit``) and measures:

1. the request path, in CPU µs per event: building the :class:`~layers.audit.AuditEvent` a
   cached tile read of a restricted layer makes, :meth:`AuditLog.record`, and the background
   writer's share (same process, same GIL); their sum is what the audit adds to a request (the
   lead's API benchmark compares it with a cached tile);
2. the writer: ``N`` events recorded at once, then the time until all are in the database (the
   hash chain computed by the trigger, one COPY per ``max_batch`` events), in rows/s;
3. :func:`~layers.audit.record_now`: one event per transaction, as writes do, in rows/s, next
   to one-row transactions into a plain table (the commit's own cost);
4. :func:`~layers.audit.verify` over the whole log, in rows/s.


Usage: ``python bench/audit.py [--events 100000] [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from layers.audit import AuditEvent, AuditLog, record_now, verify  # noqa: E402
from layers.database import database_url, drop_database, get_engine, upgrade  # noqa: E402
from twin.sample import load_sample  # noqa: E402


def event(i: int) -> AuditEvent:
    """The event a cached tile read of a restricted layer makes."""
    return AuditEvent(
        action="read",
        actor="ana",
        role="emergency_commander",
        layer="power_lines",
        feature_count=37,
        bbox=(7.41, 43.72, 7.43, 43.74),
        client="10.0.0.7",
        purpose="incident 2026-118",
        request=f"GET /collections/power_lines/tiles/WebMercatorQuad/15/{i % 1000}/11806",
        status=200,
    )


def build(count: int) -> float:
    """Return µs per event built (what an audited request does besides recording it)."""
    start = time.perf_counter()
    for i in range(count):
        event(i)
    return (time.perf_counter() - start) / count * 1e6


def request_path(url: str, count: int, *, chunk: int = 1000) -> tuple[float, float]:
    """Return µs per :meth:`AuditLog.record` call and the writer's CPU µs per event.

    Events are recorded ``chunk`` at a time and written between chunks (as a server recording
    fewer events per second than the writer sustains sees them): ``record`` is timed alone,
    and the process's CPU time while the writer writes is what each event costs in the
    background, in the same process (the GIL is shared).
    """
    events = [event(i) for i in range(count)]
    log = AuditLog(url)
    recording = writing = 0.0
    try:
        for first in range(0, count, chunk):
            start = time.perf_counter()
            for item in events[first : first + chunk]:
                log.record(item)
            recording += time.perf_counter() - start
            cpu = time.process_time()
            assert log.flush(timeout_s=None)
            writing += time.process_time() - cpu
    finally:
        log.close(timeout_s=None)
    assert (log.written, log.dropped) == (count, 0), (log.written, log.dropped)
    return recording / count * 1e6, writing / count * 1e6


def writer(url: str, count: int) -> float:
    """Return the rows/s the background writer sustains for ``count`` queued events."""
    events = [event(i) for i in range(count)]
    log = AuditLog(url, flush_interval_s=3600)
    try:
        start = time.perf_counter()
        for item in events:
            log.record(item)
        assert log.flush(timeout_s=None)
        elapsed = time.perf_counter() - start
    finally:
        log.close()
    return count / elapsed


def transactions(url: str, count: int) -> float:
    """Return the rows/s of :func:`record_now`, one event per transaction."""
    engine = get_engine(url)
    start = time.perf_counter()
    for i in range(count):
        with engine.begin() as connection:
            record_now(connection, event(i))
    return count / (time.perf_counter() - start)


def plain_transactions(url: str, count: int) -> float:
    """Return the rows/s of one-row transactions into a table with no trigger (the peer)."""
    engine = get_engine(url)
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE bench_plain (at timestamptz, request text)")
    start = time.perf_counter()
    for i in range(count):
        with engine.begin() as connection:
            connection.exec_driver_sql(
                "INSERT INTO bench_plain VALUES (now(), %(r)s)", {"r": event(i).request}
            )
    return count / (time.perf_counter() - start)


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="events per run")
    parser.add_argument("--repeat", type=int, default=3, help="runs; the median is printed")
    args = parser.parse_args()
    base = make_url(database_url())
    url = base.set(database=f"{base.database}_bench_audit").render_as_string(hide_password=False)
    drop_database(url)
    upgrade(url)
    load_sample(url=url)
    n, runs = args.events, range(args.repeat)
    try:
        built = statistics.median(build(n) for _ in runs)
        paths = [request_path(url, n) for _ in runs]
        recorded = statistics.median(p[0] for p in paths)
        background = statistics.median(p[1] for p in paths)
        rows_s = statistics.median(writer(url, n) for _ in runs)
        single = transactions(url, min(n, 2000))
        plain = plain_transactions(url, min(n, 2000))
        start = time.perf_counter()
        report = verify(url=url)
        verify_s = report.rows / (time.perf_counter() - start)
        assert report.intact, str(report)
    finally:
        get_engine(url).dispose()
        drop_database(url)
    print(f"events per run: {n:,}, median of {args.repeat}")
    print(f"{'request path (in-process CPU)':<44} {'µs/event':>10}")
    print(f"{'build the AuditEvent':<44} {built:>10.2f}")
    print(f"{'AuditLog.record (queue it)':<44} {recorded:>10.2f}")
    print(f"{'the writer thread (background, same process)':<44} {background:>10.2f}")
    print(f"{'audit per request, all in':<44} {built + recorded + background:>10.2f}")
    print(f"{'database':<44} {'rows/s':>10}")
    print(f"{'AuditLog writer (batches of 1000)':<44} {rows_s:>10,.0f}")
    print(f"{'record_now (one transaction each)':<44} {single:>10,.0f}")
    print(f"{'plain INSERT (one transaction each, no audit)':<44} {plain:>10,.0f}")
    checked = f"verify ({report.rows:,} rows)"
    print(f"{checked:<44} {verify_s:>10,.0f}")


if __name__ == "__main__":
    main()
