"""Fixtures: real PostGIS databases made for the test run, from the project's migrations.

``TWIN_DATABASE_URL`` (or the local default) names the server; the tests create their own
databases next to it (``<name>_test`` for tests that write, ``<name>_test_sample`` holding the
sample city for tests that only read) and never touch the configured one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

import twin
from layers.catalog import LAYERS
from layers.database import database_url, drop_database, get_engine, upgrade
from twin.sample import load_sample

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data_samples" / "monaco"
SHARED = ROOT.parent / "shared" / "data"


def _fresh_database(suffix: str) -> str:
    base = make_url(database_url(os.environ.get("TWIN_DATABASE_URL")))
    rendered = base.set(database=f"{base.database}{suffix}").render_as_string(hide_password=False)
    drop_database(rendered)
    upgrade(rendered)
    return rendered


@pytest.fixture(scope="session")
def db_url() -> Iterator[str]:
    """A migrated, initially empty database for tests that write."""
    url = _fresh_database("_test")
    yield url
    get_engine(url).dispose()


@pytest.fixture
def empty_db(db_url: str) -> str:
    """The write database with every layer table emptied."""
    tables = ", ".join(layer.table for layer in LAYERS.values())
    with get_engine(db_url).begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {tables} RESTART IDENTITY"))
    return db_url


@pytest.fixture
def raster_db(empty_db: str) -> str:
    """The write database with no layer features and no rasters."""
    with get_engine(empty_db).begin() as conn:
        conn.execute(sa.text("DELETE FROM rasters"))
    return empty_db


@pytest.fixture(scope="session")
def sample_db() -> Iterator[str]:
    """A database holding the sample city, for tests that only read."""
    url = _fresh_database("_test_sample")
    load_sample(directory=SAMPLE, url=url)
    yield url
    get_engine(url).dispose()


@pytest.fixture(scope="session")
def routing_db() -> Iterator[str]:
    """A database holding the sample city, for routing tests that add closures."""
    url = _fresh_database("_test_routing")
    load_sample(directory=SAMPLE, url=url)
    yield url
    get_engine(url).dispose()


@pytest.fixture
def city(routing_db: str) -> Iterator[twin.City]:
    """The sample city; closures a test adds through the API are removed afterwards."""
    town = twin.connect(routing_db)
    yield town
    town.router.clear_flood()
    with get_engine(routing_db).begin() as conn:
        conn.execute(sa.text("DELETE FROM closures WHERE source = 'api'"))


def serve(url: str) -> Iterator[str]:
    """Run the API in its own process (as a client sees it) on a free port; yield its address."""
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = os.environ | {"TWIN_DATABASE_URL": url}
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "api.app:create_app",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    process = subprocess.Popen(command, env=env, cwd=ROOT)
    address = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{address}/health", timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        yield address
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def sample_server(sample_db: str) -> Iterator[str]:
    """The API over the sample city, served on localhost for real clients (GDAL)."""
    yield from serve(sample_db)
