"""A streaming read replica of the test server, for the replica tests (scripts/replica.sh).

Each user gets a replica of its own: a free port and a data directory in a temporary folder,
removed afterwards, so a test never touches a replica someone runs on this machine (5433).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from tests.conditions import wait_until

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "replica.sh"


def have_postgres_binaries() -> bool:
    """Tell whether this machine has PostgreSQL's server binaries and psql."""
    return bool(shutil.which("psql")) and bool(
        shutil.which("pg_ctl") or glob.glob("/usr/lib/postgresql/*/bin/pg_ctl")
    )


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def libpq(url: str) -> str:
    """Return a SQLAlchemy URL as a libpq one (for psycopg.connect)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@dataclass
class Replica:
    """A replica run by scripts/replica.sh on ``port`` with its data in ``directory``."""

    port: int
    directory: Path
    primary: str  # the primary server's URL (SQLAlchemy)

    @property
    def read_url(self) -> str:
        """The replica's server URL, naming no database (TWIN_DATABASE_READ_URLS)."""
        base = make_url(self.primary)
        return f"postgresql://{base.username or 'postgres'}@127.0.0.1:{self.port}"

    def url(self, database_url: str) -> str:
        """The URL of ``database_url``'s database on the replica (SQLAlchemy)."""
        return (
            make_url(database_url)
            .set(host="127.0.0.1", port=self.port)
            .render_as_string(hide_password=False)
        )

    def run(self, action: str) -> str:
        """Run ``scripts/replica.sh ACTION`` for this replica; return its output."""
        base = make_url(self.primary)
        env = os.environ | {
            "REPLICA_PORT": str(self.port),
            "REPLICA_DIR": str(self.directory),
            "PRIMARY_HOST": base.host or "127.0.0.1",
            "PRIMARY_PORT": str(base.port or 5432),
            "PRIMARY_USER": base.username or "postgres",
            "REPLICA_WAIT_S": "120",
        }
        done = subprocess.run(
            ["bash", str(SCRIPT), action], env=env, capture_output=True, text=True, timeout=300
        )
        if done.returncode != 0:
            raise AssertionError(
                f"scripts/replica.sh {action} exited {done.returncode}:\n{done.stdout}{done.stderr}"
            )
        return done.stdout

    def execute(self, database_url: str, statement: str) -> object:
        """Run one statement on the replica's copy of a database; return the first value."""
        with psycopg.connect(libpq(self.url(database_url)), autocommit=True) as conn:
            row = conn.execute(statement).fetchone()
        return None if row is None else row[0]

    @contextmanager
    def paused(self, database_url: str) -> Iterator[None]:
        """Pause the replica's WAL replay for a block: it serves reads but sees no new write."""
        self.execute(database_url, "SELECT pg_wal_replay_pause()")
        try:
            wait_until(
                lambda: (
                    self.execute(database_url, "SELECT pg_get_wal_replay_pause_state()") == "paused"
                ),
                timeout_s=180,
                what="the replica's replay pausing",
            )
            yield
        finally:
            self.execute(database_url, "SELECT pg_wal_replay_resume()")

    def caught_up(self, database_url: str, *, timeout_s: float = 180) -> float:
        """Wait until the replica has replayed all the primary wrote so far; return the wait, s."""
        with psycopg.connect(libpq(database_url), autocommit=True) as conn:
            target = conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()
        assert target is not None
        start = time.perf_counter()
        wait_until(
            lambda: self.execute(
                database_url, f"SELECT pg_last_wal_replay_lsn() >= '{target[0]}'::pg_lsn"
            ),
            timeout_s=timeout_s,
            what=f"the replica replaying up to {target[0]}",
        )
        return time.perf_counter() - start


@contextmanager
def streaming_replica(primary: str) -> Iterator[Replica]:
    """Start a replica of the server of ``primary`` (a database URL) for a block.

    Skips the calling test when PostgreSQL's server binaries are absent; any other failure of
    the script fails it.
    """
    if not have_postgres_binaries():
        pytest.skip("PostgreSQL server binaries (pg_ctl, pg_basebackup) are not installed")
    folder = Path(tempfile.mkdtemp(prefix="twin_replica_"))
    folder.chmod(0o755)  # the server runs as postgres when the tests run as root
    replica = Replica(port=free_port(), directory=folder / "data", primary=primary)
    try:
        replica.run("start")
        yield replica
    finally:
        try:
            replica.run("remove")
        finally:
            shutil.rmtree(folder, ignore_errors=True)
