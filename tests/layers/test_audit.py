"""The audit trail (migration 0011, layers/audit.py): append-only, hash-chained, written in batches.

These tests run on a database of their own (``_audit``): they disable the log's triggers to
tamper with it, which must never break the chain other tests read. Each test starts from an
empty log (:func:`audit_db`).
"""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import psycopg
import pytest

from layers.audit import MAX_IDS, AuditEvent, AuditLog, export, record_now, verify
from layers.database import get_engine
from tests.conditions import wait_until
from tests.conftest import _fresh_database

ROOT = Path(__file__).resolve().parents[2]
OWNER_TRIGGERS = ("audit_log_append_only", "audit_log_no_truncate")


def libpq(url: str) -> str:
    """The libpq URL of a SQLAlchemy one."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def sql(url: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run one statement as the database's owner (autocommit); return its rows, if any."""
    with psycopg.connect(libpq(url), autocommit=True) as connection:
        cur = connection.execute(query, params)
        return cur.fetchall() if cur.description else []


def tamper(url: str, statement: str, params: tuple[Any, ...] = ()) -> None:
    """Run a statement on the log with its append-only triggers disabled, as its owner could."""
    with psycopg.connect(libpq(url)) as connection:
        for trigger in OWNER_TRIGGERS:
            connection.execute(f"ALTER TABLE audit_log DISABLE TRIGGER {trigger}")
        connection.execute(statement, params)
        for trigger in OWNER_TRIGGERS:
            connection.execute(f"ALTER TABLE audit_log ENABLE TRIGGER {trigger}")


def empty_log(url: str) -> None:
    """Empty the audit log and reset its chain's head (a fresh log, for the next test)."""
    with psycopg.connect(libpq(url)) as connection:
        connection.execute("ALTER TABLE audit_log DISABLE TRIGGER USER")
        connection.execute("ALTER TABLE audit_chain DISABLE TRIGGER USER")
        connection.execute("TRUNCATE audit_log")
        connection.execute("UPDATE audit_chain SET last_id = 0, last_hash = %s", (bytes(32),))
        connection.execute("ALTER TABLE audit_log ENABLE TRIGGER USER")
        connection.execute("ALTER TABLE audit_chain ENABLE TRIGGER USER")


@pytest.fixture(scope="session")
def _audit_database() -> Iterator[str]:
    url = _fresh_database("_audit")
    yield url
    get_engine(url).dispose()


@pytest.fixture
def audit_db(_audit_database: str) -> str:
    """A migrated database of the audit tests' own, with an empty audit log."""
    empty_log(_audit_database)
    return _audit_database


def write(url: str, *events: AuditEvent) -> list[int]:
    """Record events with :func:`record_now`, one transaction; return their ids."""
    with get_engine(url).begin() as connection:
        return [record_now(connection, event) for event in events]


def some_events(count: int, **fields: Any) -> list[AuditEvent]:
    return [
        AuditEvent(action="read", actor=f"user{i}", layer="cameras", ids=(f"cam{i}",), **fields)
        for i in range(count)
    ]


# --- the chain ---------------------------------------------------------------------------------


def test_each_row_hashes_its_fields_and_the_previous_hash(audit_db: str) -> None:
    ids = write(audit_db, *some_events(3, bbox=(7.41, 43.72, 7.43, 43.74), purpose="patrol"))
    assert ids == [1, 2, 3]
    rows = sql(
        audit_db, "SELECT id, prev_hash, hash, audit_canonical(a) FROM audit_log a ORDER BY id"
    )
    previous = bytes(32)
    for _, prev_hash, row_hash, canonical in rows:
        assert prev_hash == previous
        assert row_hash == hashlib.sha256(prev_hash + canonical.encode()).digest()
        previous = row_hash
    assert json.loads(rows[0][3])[2:8] == [
        "user0",
        None,
        "read",
        "cameras",
        ["cam0"],
        [7.41, 43.72, 7.43, 43.74],
    ]
    report = verify(url=audit_db)
    assert (report.rows, report.intact, str(report)) == (3, True, "3 rows, chain intact")


def test_canonical_text_ignores_the_sessions_time_zone_and_float_setting(audit_db: str) -> None:
    write(audit_db, AuditEvent(action="read", bbox=(7.1, 43.123456789012345, 7.2, 43.2)))
    query = "SELECT audit_canonical(a) FROM audit_log a"
    with psycopg.connect(libpq(audit_db)) as connection:
        first = connection.execute(query).fetchone()
        connection.execute("SET TimeZone = 'Asia/Shanghai'; SET extra_float_digits = -3")
        assert connection.execute(query).fetchone() == first
    assert verify(url=audit_db).intact


def test_chain_holds_with_concurrent_writer_processes_and_threads(audit_db: str) -> None:
    processes, per_process, threads, per_thread = 4, 1500, 4, 40
    script = (
        "import sys\n"
        "from layers.audit import AuditEvent, AuditLog\n"
        "log = AuditLog(sys.argv[1], flush_interval_s=0.01, max_batch=100)\n"
        "print('ready', flush=True)\n"
        "sys.stdin.readline()\n"
        "for i in range(int(sys.argv[3])):\n"
        "    log.record(AuditEvent(action='read', actor=sys.argv[2], ids=(str(i),)))\n"
        "assert log.close(60) and log.written == int(sys.argv[3]), (log.written, log.dropped)\n"
    )
    children = [
        subprocess.Popen(
            [sys.executable, "-c", script, audit_db, f"process{n}", str(per_process)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for n in range(processes)
    ]
    for child in children:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    start = threading.Barrier(threads + 1)

    def transactions(name: str) -> None:
        start.wait()
        for i in range(per_thread):
            write(audit_db, AuditEvent(action="update", actor=name, ids=(str(i),)))

    workers = [threading.Thread(target=transactions, args=(f"thread{n}",)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    start.wait()
    for worker in workers:
        worker.join(timeout=120)
    for child in children:
        child.communicate(timeout=120)  # closes the pipes
        assert child.returncode == 0

    total = processes * per_process + threads * per_thread
    report = verify(url=audit_db)
    assert (report.rows, report.intact) == (total, True), str(report)
    ids, actors = zip(*sql(audit_db, "SELECT id, actor FROM audit_log ORDER BY id"), strict=True)
    assert ids == tuple(range(1, total + 1))  # gapless, in chain order
    switches = sum(1 for a, b in pairwise(actors) if a != b)
    assert switches > processes + threads  # the writers did interleave


# --- append-only and tampering -----------------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_log SET actor = 'nobody' WHERE id = 1",
        "DELETE FROM audit_log WHERE id = 1",
        "TRUNCATE audit_log",
        "UPDATE audit_chain SET last_id = 0",
        "DELETE FROM audit_chain",
    ],
)
def test_the_log_refuses_update_delete_and_truncate(audit_db: str, statement: str) -> None:
    write(audit_db, *some_events(2))
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
        sql(audit_db, statement)
    assert sql(audit_db, "SELECT count(*) FROM audit_log") == [(2,)]
    assert verify(url=audit_db).intact


def test_an_edited_row_is_named(audit_db: str) -> None:
    write(audit_db, *some_events(5))
    tamper(audit_db, "UPDATE audit_log SET layer = 'roads' WHERE id = 3")
    report = verify(url=audit_db)
    assert (report.bad_id, report.reason) == (3, "hash does not match its fields")
    assert str(report) == "row 3: hash does not match its fields (3 rows checked)"


def test_an_edited_and_rehashed_row_breaks_the_next_link(audit_db: str) -> None:
    write(audit_db, *some_events(5))
    tamper(audit_db, "UPDATE audit_log SET ids = '{cam9}' WHERE id = 3")
    tamper(
        audit_db,
        "UPDATE audit_log a SET hash = sha256(prev_hash || convert_to(audit_canonical(a), "
        "'UTF8')) WHERE id = 3",
    )
    report = verify(url=audit_db)
    assert (report.bad_id, report.reason) == (4, "previous hash does not match row 3")


def test_a_deleted_row_is_named(audit_db: str) -> None:
    write(audit_db, *some_events(5))
    tamper(audit_db, "DELETE FROM audit_log WHERE id = 3")
    report = verify(url=audit_db)
    assert (report.bad_id, report.reason) == (4, "previous hash does not match row 2")


def test_deleted_last_rows_are_named(audit_db: str) -> None:
    write(audit_db, *some_events(5))
    tamper(audit_db, "DELETE FROM audit_log WHERE id >= 4")
    report = verify(url=audit_db)
    assert report.bad_id == 4
    assert report.reason == "row 4 is missing (the chain's head says the last row is 5)"


def test_deleted_last_rows_are_named_after_new_rows_are_written(audit_db: str) -> None:
    write(audit_db, *some_events(5))
    tamper(audit_db, "DELETE FROM audit_log WHERE id >= 4")
    assert write(audit_db, *some_events(2)) == [6, 7]  # the chain goes on from its head
    report = verify(url=audit_db)
    assert (report.bad_id, report.reason) == (6, "previous hash does not match row 3")


def test_a_stale_snapshot_fails_instead_of_forking_the_chain(audit_db: str) -> None:
    write(audit_db, *some_events(1))
    with psycopg.connect(libpq(audit_db)) as stale:
        stale.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        stale.execute("SELECT count(*) FROM audit_log")  # takes the snapshot
        write(audit_db, *some_events(1))  # another writer commits row 2
        with pytest.raises((psycopg.errors.UniqueViolation, psycopg.errors.SerializationFailure)):
            record_now(stale, AuditEvent(action="update", actor="stale"))
    assert write(audit_db, *some_events(1)) == [3]
    assert verify(url=audit_db).rows == 3


def test_a_swapped_pair_of_rows_is_named(audit_db: str) -> None:
    write(audit_db, *some_events(4))
    tamper(audit_db, "UPDATE audit_log SET id = -id WHERE id IN (2, 3)")
    tamper(audit_db, "UPDATE audit_log SET id = CASE id WHEN -2 THEN 3 ELSE 2 END WHERE id < 0")
    report = verify(url=audit_db)
    assert (report.bad_id, report.reason) == (2, "hash does not match its fields")


def test_verify_since_an_id_checks_only_the_rows_after_it(audit_db: str) -> None:
    write(audit_db, *some_events(6))
    tamper(audit_db, "UPDATE audit_log SET actor = 'someone else' WHERE id = 2")
    assert verify(url=audit_db).bad_id == 2
    recent = verify(url=audit_db, since_id=4)
    assert (recent.rows, recent.intact) == (3, True)


def test_a_rolled_back_write_leaves_no_row_and_no_gap(audit_db: str) -> None:
    write(audit_db, *some_events(1))
    with pytest.raises(RuntimeError), get_engine(audit_db).begin() as connection:
        record_now(connection, AuditEvent(action="delete", layer="incidents", ids=("i1",)))
        raise RuntimeError("the edit failed")
    assert write(audit_db, *some_events(1)) == [2]
    assert verify(url=audit_db).rows == 2


# --- events ------------------------------------------------------------------------------------


def test_an_event_keeps_the_first_ids_and_counts_them_all() -> None:
    event = AuditEvent(action="read", ids=[str(i) for i in range(1000)], purpose="a\x00b")
    assert event.ids is not None and len(event.ids) == MAX_IDS
    assert event.feature_count == 1000
    assert event.purpose == "a\ufffdb"
    assert event.at.tzinfo is not None
    with pytest.raises(ValueError, match="bbox"):
        AuditEvent(action="read", bbox=(7.0, float("nan"), 7.1, 43.8))
    with pytest.raises(ValueError, match="action"):
        AuditEvent(action="")


# --- the background writer ---------------------------------------------------------------------


def test_audit_log_writes_in_batches_of_one_statement(audit_db: str) -> None:
    log = AuditLog(audit_db, flush_interval_s=3600, max_batch=100)
    try:
        for event in some_events(250):
            log.record(event)
        # a full batch wakes the writer, which writes all it has, without waiting an hour
        wait_until(lambda: log.written == 250, timeout_s=30, what="the full batches written")
        for event in some_events(30):
            log.record(event)
        assert log.flush(30)  # and a flush writes what is left at once
    finally:
        assert log.close()
    assert (log.written, log.dropped, log.pending) == (280, 0, 0)
    # one statement and one transaction per batch: rows of a batch share a transaction id
    sizes = sql(audit_db, "SELECT count(*) FROM audit_log GROUP BY xmin::text ORDER BY 1 DESC")
    assert max(sizes)[0] <= 100 and sum(size for (size,) in sizes) == 280
    assert len(sizes) <= 8  # a few statements, never one per row
    assert verify(url=audit_db).rows == 280


def test_audit_log_keeps_events_while_the_database_is_unreachable(audit_db: str) -> None:
    name = sql(audit_db, "SELECT current_database()")[0][0]
    server = libpq(audit_db).rsplit("/", 1)[0] + "/postgres"
    log = AuditLog(audit_db, flush_interval_s=0.05, max_batch=10, max_pending=30)
    try:
        log.record(AuditEvent(action="read", actor="before"))
        assert log.flush(30)
        # the database goes away: no new connections, the writer's own one cut
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            try:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = %s AND application_name = 'twin-audit'",
                    (name,),
                )
                for event in some_events(35):
                    log.record(event)  # never raises, never blocks
                wait_until(lambda: log.last_error is not None, timeout_s=30, what="a failed write")
                assert not log.flush(0.3)
                assert (log.pending, log.dropped, log.written) == (30, 5, 1)
            finally:
                admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        assert log.flush(30)  # back: the kept events are written
    finally:
        log.close()
    assert (log.written, log.dropped, log.rejected) == (31, 5, 0)
    actors = [row[0] for row in sql(audit_db, "SELECT actor FROM audit_log ORDER BY id")]
    assert actors == ["before"] + [f"user{i}" for i in range(30)]
    assert verify(url=audit_db).intact


def test_audit_log_writes_text_postgresql_cannot_hold_as_replacements(audit_db: str) -> None:
    with AuditLog(audit_db) as log:
        log.record(AuditEvent(action="read", request="GET /collections/x\x00y/items"))
        log.record(AuditEvent(action="read", purpose="bad \udcff byte", ids=("a\x00",)))
    assert (log.written, log.rejected) == (2, 0)
    rows = sql(audit_db, "SELECT request, purpose, ids FROM audit_log ORDER BY id")
    assert rows == [
        ("GET /collections/x\ufffdy/items", None, None),
        ("", "bad ? byte", ["a\ufffd"]),
    ]


def test_audit_log_drops_what_is_recorded_after_closing(audit_db: str) -> None:
    log = AuditLog(audit_db)
    log.record(AuditEvent(action="read"))
    assert log.close()
    log.record(AuditEvent(action="read"))
    assert (log.written, log.dropped) == (1, 1)


# --- export ------------------------------------------------------------------------------------


def test_export_round_trips_a_period(audit_db: str, tmp_path: Path) -> None:
    day = datetime(2026, 11, 30, tzinfo=UTC)
    events = [
        AuditEvent(action="read", actor="early", at=day - timedelta(seconds=1)),
        AuditEvent(
            action="read",
            actor="ana",
            role="emergency_commander",
            layer="power_lines",
            ids=("pl1", 'p"l,2'),
            bbox=(7.41, 43.72, 7.43, 43.74),
            client="10.0.0.7",
            purpose="出警 (dispatch), line 2",
            request="GET /collections/power_lines/items?bbox=7.41,43.72,7.43,43.74",
            status=200,
            at=day,
        ),
        AuditEvent(action="delete", layer="incidents", at=day + timedelta(hours=23)),
        AuditEvent(action="read", actor="late", at=day + timedelta(days=1)),
    ]
    write(audit_db, *events)
    path = tmp_path / "audit.csv"
    assert export(path, start=day, end=day + timedelta(days=1), url=audit_db) == 2
    with path.open(newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    assert list(rows[0]) == [
        "id",
        "at",
        "actor",
        "role",
        "action",
        "layer",
        "ids",
        "bbox",
        "feature_count",
        "client",
        "purpose",
        "request",
        "status",
        "prev_hash",
        "hash",
    ]
    first = rows[0]
    assert first["id"] == "2"
    assert datetime.fromisoformat(first["at"]) == day
    assert (first["actor"], first["role"], first["layer"]) == (
        "ana",
        "emergency_commander",
        "power_lines",
    )
    assert json.loads(first["ids"]) == ["pl1", 'p"l,2']
    assert json.loads(first["bbox"]) == [7.41, 43.72, 7.43, 43.74]
    assert (first["feature_count"], first["status"]) == ("2", "200")
    assert (first["client"], first["purpose"]) == ("10.0.0.7", "出警 (dispatch), line 2")
    assert first["request"] == events[1].request
    assert (rows[1]["actor"], rows[1]["ids"], rows[1]["role"]) == ("anonymous", "", "")
    stored = sql(audit_db, "SELECT id, prev_hash, hash FROM audit_log WHERE id IN (2, 3)")
    for row, (_, prev_hash, row_hash) in zip(rows, sorted(stored), strict=True):
        assert (row["prev_hash"], row["hash"]) == (prev_hash.hex(), row_hash.hex())
    assert rows[1]["prev_hash"] == rows[0]["hash"]


def test_export_refuses_an_empty_period(audit_db: str, tmp_path: Path) -> None:
    day = datetime(2026, 11, 30, tzinfo=UTC)
    with pytest.raises(ValueError, match="after"):
        export(tmp_path / "a.csv", start=day, end=day, url=audit_db)
