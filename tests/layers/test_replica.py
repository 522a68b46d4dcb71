"""Reads on a streaming replica (scripts/replica.sh), writes on the primary, fallback when a
replica is down, read-your-writes, and the same row-level security on both.

The replica is a real second PostgreSQL server started for this module on a free port, its
data in a temporary folder. Whether a read came from it is told by the server that answered
(``inet_server_port()``) and by pausing its WAL replay (it then cannot see a new write).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import psycopg
import pydantic
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from layers.catalog import LAYERS
from layers.database import (
    current_reads,
    cursor,
    database_url,
    forget_replica_backoff,
    get_engine,
    owner_cursor,
    primary_reads,
    read_connection,
    read_urls,
    reading_at,
    replica_backoff,
    set_read_urls,
)
from layers.settings import TwinSettings
from tests.conditions import wait_until
from tests.replica_cluster import Replica, free_port, libpq, streaming_replica


@pytest.fixture(scope="module")
def replica(db_url: str) -> Iterator[Replica]:
    """A replica of the test server, for this module."""
    with streaming_replica(db_url) as running:
        yield running


@pytest.fixture
def store(db_url: str, replica: Replica) -> Iterator[str]:
    """The write database, its reads routed to the replica (and back to settings afterwards)."""
    forget_replica_backoff()
    set_read_urls(db_url, [replica.read_url])
    with get_engine(db_url).begin() as conn:
        conn.execute(sa.text("CREATE TABLE IF NOT EXISTS replica_probe (note text)"))
        conn.execute(sa.text("TRUNCATE replica_probe"))
    # this process wrote: its reads go to the replica once it has replayed that write
    wait_until(
        lambda: served_by(db_url) == replica.port,
        timeout_s=180,
        what="reads going to the replica once it replayed the set-up",
    )
    yield db_url
    set_read_urls(db_url, None)
    forget_replica_backoff()


def served_by(url: str) -> int:
    """The port of the server that answers a read of ``url``'s database."""
    with cursor(url) as cur:
        cur.execute("SELECT inet_server_port()")
        row = cur.fetchone()
    assert row is not None
    return int(row[0])


def notes(url: str) -> list[str]:
    with cursor(url) as cur:
        cur.execute("SELECT note FROM replica_probe ORDER BY note")
        return [row[0] for row in cur.fetchall()]


def write_elsewhere(url: str, note: str) -> None:
    """Write on the primary as another process would (not through this process's engines)."""
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        conn.execute("INSERT INTO replica_probe VALUES (%s)", (note,))


# -- settings --------------------------------------------------------------------------------


def test_read_urls_are_read_as_a_comma_list_or_a_json_array(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "TWIN_DATABASE_READ_URLS", "postgresql://postgres@127.0.0.1:5433, postgresql://u@h:1/db"
    )
    assert TwinSettings().database_read_urls == (
        "postgresql://postgres@127.0.0.1:5433",
        "postgresql://u@h:1/db",
    )
    monkeypatch.setenv("TWIN_DATABASE_READ_URLS", '["postgresql://postgres@127.0.0.1:5433"]')
    assert TwinSettings().database_read_urls == ("postgresql://postgres@127.0.0.1:5433",)
    monkeypatch.setenv("TWIN_DATABASE_READ_URLS", "")
    assert TwinSettings().database_read_urls == ()


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        ("mysql://root@127.0.0.1/twin", "not a PostgreSQL URL"),
        ("nothing like a url", "not a database URL"),
        ('["postgresql://postgres@127.0.0.1:5433"', "not a JSON array"),
        ("postgresql:///twin", "names no host"),
    ],
)
def test_a_bad_read_url_is_refused_naming_the_field(
    monkeypatch: pytest.MonkeyPatch, given: str, reason: str
) -> None:
    monkeypatch.setenv("TWIN_DATABASE_READ_URLS", given)
    with pytest.raises(pydantic.ValidationError) as refused:
        TwinSettings()
    assert "database_read_urls" in str(refused.value) and reason in str(refused.value)


def test_set_read_urls_refuses_a_bad_url(db_url: str) -> None:
    with pytest.raises(ValueError, match="database_read_urls: 'sqlite:///x' is not a PostgreSQL"):
        set_read_urls(db_url, ["sqlite:///x"])
    assert read_urls(db_url) == ()


def test_a_read_url_without_a_database_reads_the_primarys_database(db_url: str) -> None:
    set_read_urls(db_url, ["postgresql://postgres@127.0.0.1:5999", "postgres://h2:7/other"])
    try:
        first, second = read_urls(db_url)
    finally:
        set_read_urls(db_url, None)
    assert make_url(first).database == make_url(db_url).database
    assert make_url(first).port == 5999 and make_url(first).query["connect_timeout"] == "2"
    assert make_url(second).database == "other" and make_url(second).host == "h2"
    assert read_urls(db_url) == ()  # forgotten: the settings decide (they name another database)


# -- reads on the replica -----------------------------------------------------------------------


def test_the_replica_serves_a_write_made_on_the_primary(
    store: str, replica: Replica, record_property: Callable[[str, object], None]
) -> None:
    assert served_by(store) == replica.port
    start = time.perf_counter()
    write_elsewhere(store, "made on the primary")
    wait_until(
        lambda: "made on the primary" in notes(store),
        timeout_s=180,
        what="the replica serving the primary's write",
        every_s=0.002,
    )
    lag_s = time.perf_counter() - start
    assert served_by(store) == replica.port
    record_property("replication_lag_s", round(lag_s, 4))  # bench/replica.py: its p50/p95


def test_reads_go_to_the_replica_not_the_primary(store: str, replica: Replica) -> None:
    with replica.paused(store):
        write_elsewhere(store, "not replayed yet")
        assert notes(store) == []  # the primary has it: this read did not go there
        with primary_reads():
            assert notes(store) == ["not replayed yet"]
            assert served_by(store) != replica.port
        with owner_cursor(store) as cur:  # the owner's reads too (the road graph, the rules)
            cur.execute("SELECT count(*) FROM replica_probe")
            assert cur.fetchone() == (0,)
        with read_connection(store) as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM replica_probe")).scalar() == 0
    wait_until(
        lambda: notes(store) == ["not replayed yet"],
        timeout_s=180,
        what="the replica replaying once resumed",
    )


def test_current_reads_are_as_new_as_the_primary(store: str, replica: Replica) -> None:
    with replica.paused(store):
        write_elsewhere(store, "announced")
        assert notes(store) == []  # the replica, behind
        with current_reads(store):  # as new as the primary now: the primary answers
            assert notes(store) == ["announced"]
        assert notes(store) == []
    replica.caught_up(store)
    with current_reads(store):  # the replica caught up: it answers again
        assert served_by(store) == replica.port and notes(store) == ["announced"]


def test_this_process_reads_its_own_writes_at_once(store: str, replica: Replica) -> None:
    with replica.paused(store):
        with get_engine(store).begin() as conn:
            conn.execute(sa.text("INSERT INTO replica_probe VALUES ('mine')"))
        # the replica has not seen it: the read goes to the primary, which has
        assert notes(store) == ["mine"]
        assert served_by(store) != replica.port
    # once the replica has replayed the write, reads go back to it
    wait_until(
        lambda: served_by(store) == replica.port,
        timeout_s=180,
        what="reads going back to the replica after it caught up",
    )
    assert notes(store) == ["mine"]


# -- a replica down -----------------------------------------------------------------------------


def test_a_dead_replica_is_skipped_then_left_alone(store: str, replica: Replica) -> None:
    dead = f"postgresql://postgres@127.0.0.1:{free_port()}"
    set_read_urls(store, [dead, replica.read_url])
    assert served_by(store) == replica.port  # the next URL answered
    (left,) = replica_backoff()
    assert make_url(left).port == make_url(dead).port
    waits = replica_backoff()[left]
    assert 0 < waits <= 5
    set_read_urls(store, [dead])  # only the dead one: the primary answers
    assert served_by(store) == make_url(database_url(store)).port
    assert replica_backoff()[left] <= waits  # not tried again, so not pushed back


def test_reads_fall_back_to_the_primary_while_the_replica_is_stopped(
    store: str, replica: Replica
) -> None:
    replica.run("stop")
    try:
        assert served_by(store) == make_url(database_url(store)).port
        assert notes(store) == []
        (left,) = replica_backoff()
        waits = replica_backoff()[left]
        for _ in range(20):  # left alone: a retry that failed again would push the wait back
            assert served_by(store) != replica.port
            now = replica_backoff()[left]
            assert now <= waits
            waits = now
    finally:
        replica.run("start")
    forget_replica_backoff()
    wait_until(
        lambda: served_by(store) == replica.port,
        timeout_s=180,
        what="reads back on the restarted replica",
        ignore=(psycopg.Error, sa.exc.OperationalError),
    )


# -- the same walls -----------------------------------------------------------------------------


def test_row_level_security_applies_identically_on_the_replica(
    sample_db: str, replica: Replica
) -> None:

    def counts(clearance: int | None) -> dict[str, int]:
        found = {}
        with reading_at(clearance):
            for layer in LAYERS.values():
                with cursor(sample_db) as cur:
                    cur.execute(f"SELECT count(*) FROM {layer.table}")  # catalog names
                    row = cur.fetchone()
                    assert row is not None
                    found[layer.id] = int(row[0])
                    cur.execute("SELECT inet_server_port()")
                    port = cur.fetchone()
                    found["port"] = -1 if port is None else int(port[0])
        return found

    on_primary = {c: counts(c) for c in (0, 3, None)}
    set_read_urls(sample_db, [replica.read_url])
    try:
        wait_until(  # once it replayed what this process loaded
            lambda: served_by(sample_db) == replica.port,
            timeout_s=180,
            what="reads going to the replica",
        )
        on_replica = {c: counts(c) for c in (0, 3, None)}
    finally:
        set_read_urls(sample_db, None)
    for clearance in (0, 3, None):
        assert on_replica[clearance].pop("port") == replica.port
        assert on_primary[clearance].pop("port") != replica.port
        assert on_replica[clearance] == on_primary[clearance], clearance
    # the wall does something: the public sees fewer rows than the owner
    assert sum(on_replica[0].values()) < sum(on_replica[None].values())
