"""Fixtures: real PostGIS databases made for the test run, from the project's migrations.

``TWIN_DATABASE_URL`` (or the local default) names the server; the tests create their own
databases next to it and never touch the configured one. Every name carries this run's token
(``<name>_test_<host><pid>_sample``, ...), so two runs on one machine or one server never drop
each other's databases; what a run that died left behind is dropped by the next run on the
same host once its process is gone.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

import twin
from layers.catalog import LAYERS
from layers.database import database_url, drop_database, get_engine, upgrade
from tests.conditions import api_server
from twin.sample import load_sample

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data_samples" / "monaco"
SHARED = ROOT.parent / "shared" / "data"


HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:4]
RUN = f"{HOST}{os.getpid()}"
_made: list[str] = []


def _base_url() -> sa.engine.URL:
    return make_url(database_url(os.environ.get("TWIN_DATABASE_URL")))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _drop_leftovers() -> None:
    """Drop databases of earlier runs on this host whose process has ended."""
    base = _base_url()
    pattern = re.compile(rf"^{re.escape(str(base.database))}_test_{HOST}(\d+)(_|$)")
    admin = sa.create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            names = conn.execute(sa.text("SELECT datname FROM pg_database")).scalars().all()
    finally:
        admin.dispose()
    for name in names:
        match = pattern.match(name)
        if match and int(match.group(1)) != os.getpid() and not _alive(int(match.group(1))):
            drop_database(base.set(database=name).render_as_string(hide_password=False))


def _fresh_database(suffix: str) -> str:
    """Create and migrate this run's database ``<name>_test_<run><suffix>``; return its URL."""
    if not _made:
        _drop_leftovers()
    base = _base_url()
    name = f"{base.database}_test_{RUN}{suffix}"
    rendered = base.set(database=name).render_as_string(hide_password=False)
    drop_database(rendered)
    upgrade(rendered)
    _made.append(rendered)
    return rendered


@pytest.fixture(scope="session", autouse=True)
def _drop_this_runs_databases() -> Iterator[None]:
    yield
    for url in _made:
        drop_database(url)


@pytest.fixture(scope="session")
def db_url() -> Iterator[str]:
    """A migrated, initially empty database for tests that write."""
    url = _fresh_database("")
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
    url = _fresh_database("_sample")
    load_sample(directory=SAMPLE, url=url)
    yield url
    get_engine(url).dispose()


@pytest.fixture(scope="session")
def routing_db() -> Iterator[str]:
    """A database holding the sample city, for routing tests that add closures."""
    url = _fresh_database("_routing")
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


@pytest.fixture(scope="session")
def sample_server(sample_db: str) -> Iterator[str]:
    """The API over the sample city, served on localhost for real clients (GDAL)."""
    with api_server(sample_db, root=ROOT) as address:
        yield address
