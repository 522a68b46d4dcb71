"""Fixtures: real PostGIS databases made for the test run, from the project's migrations.

``TWIN_DATABASE_URL`` (or the local default) names the server; the tests create their own
databases next to it and never touch the configured one. Every name carries this run's token
(``<name>_test_<host><pid>_sample``, ...), so two runs on one machine or one server never drop
each other's databases. A run holds a PostgreSQL advisory lock keyed by its token while it
lives; what a run that died left behind is dropped by the next run once that lock is free.
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
from layers.observations import forget_datastreams
from layers.settings import get_settings
from tests.conditions import api_server
from twin.sample import load_sample

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data_samples" / "monaco"
SHARED = ROOT.parent / "shared" / "data"


HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:4]
RUN = f"{HOST}{os.getpid()}"
#: Every MQTT topic of this run (the servers it starts inherit it): runs sharing a broker, and
#: a twin serving on this machine, never see each other's messages.
os.environ["TWIN_LIVE_TOPIC_PREFIX"] = f"twin_test_{RUN}/"
# The tests of what each role sees (tests/api/test_access.py) sign in; every other test calls
# as an anonymous caller holding the administrator's role, so that it sees what it tests.
os.environ["TWIN_AUTH_ANONYMOUS_ROLE"] = "administrator"
get_settings.cache_clear()
_made: list[str] = []
_owner: list[sa.engine.Connection] = []  # holds this run's advisory lock while the run lives


def _base_url() -> sa.engine.URL:
    return make_url(database_url(os.environ.get("TWIN_DATABASE_URL")))


def _lock_key(token: str) -> int:
    """The advisory-lock key of a run's token (a signed 64-bit integer)."""
    return int.from_bytes(hashlib.sha1(token.encode()).digest()[:8], "big", signed=True)


def _claim_run() -> None:
    """Take this run's advisory lock on the server, held by one connection until the run ends.

    A run is alive exactly while its lock is held, whichever host, container or PID namespace
    it runs in: PostgreSQL releases the lock when the run's connection goes, however it ends.
    """
    if _owner:
        return
    admin = sa.create_engine(_base_url().set(database="postgres"), isolation_level="AUTOCOMMIT")
    conn = admin.connect()
    conn.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": _lock_key(RUN)})
    _owner.append(conn)


def _drop_leftovers() -> None:
    """Drop the test databases of runs that have ended (their advisory lock is free)."""
    base = _base_url()
    pattern = re.compile(rf"^{re.escape(str(base.database))}_test_([0-9a-f]{{4}}\d+)(_|$)")
    conn = _owner[0]
    names = conn.execute(sa.text("SELECT datname FROM pg_database")).scalars().all()
    for name in names:
        match = pattern.match(name)
        if not match or match.group(1) == RUN:
            continue
        key = _lock_key(match.group(1))
        if conn.execute(sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar():
            try:  # nobody holds it: that run has ended and left this behind
                drop_database(base.set(database=name).render_as_string(hide_password=False))
            finally:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": key})


def _fresh_database(suffix: str) -> str:
    """Create and migrate this run's database ``<name>_test_<run><suffix>``; return its URL."""
    if not _owner:
        _claim_run()
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
    for conn in _owner:
        conn.close()  # the lock goes with the connection
        conn.engine.dispose()


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


#: The live twin's tables, emptied before each test that uses ``live_db``.
LIVE_TABLES = (
    "sta_observations, sta_latest, live_alerts, live_alert_rules, live_refusals, live_speeds, "
    "sta_datastreams, sta_location_historical_locations, sta_historical_locations, "
    "sta_thing_locations, sta_locations, sta_features_of_interest, sta_sensors, "
    "sta_observed_properties, sta_things, live_positions"
)


@pytest.fixture(scope="session")
def _live_city() -> Iterator[str]:
    url = _fresh_database("_live")
    load_sample(directory=SAMPLE, url=url)
    yield url
    get_engine(url).dispose()


def _emptied(url: str) -> str:
    with get_engine(url).begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {LIVE_TABLES} RESTART IDENTITY CASCADE"))
    forget_datastreams(url)
    from twin.live.registry import forget

    forget(url)
    return url


@pytest.fixture
def live_db(_live_city: str) -> str:
    """The sample city with no sensors, observations, alerts, live speeds or positions."""
    return _emptied(_live_city)


@pytest.fixture(scope="module")
def live_module_db(_live_city: str) -> str:
    """The live city emptied once for a module (whose server caches datastream ids)."""
    return _emptied(_live_city)


@pytest.fixture
def topic_prefix(request: pytest.FixtureRequest) -> str:
    """An MQTT topic prefix of this run and test, for a feed of the test's own."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", request.node.name)[:60]
    return f"{os.environ['TWIN_LIVE_TOPIC_PREFIX']}{name}/"


@pytest.fixture(scope="session")
def sample_server(sample_db: str) -> Iterator[str]:
    """The API over the sample city, served on localhost for real clients (GDAL)."""
    with api_server(sample_db, root=ROOT) as address:
        yield address


# -- Malta: the city-scale network (tests/malta.py), imported once and kept across runs ------


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "malta: runs on Malta's whole road network (57k edges; tests/malta.py), imported once "
        "and cached across runs",
    )


@pytest.fixture(scope="session")
def malta_db() -> str:
    """A database holding Malta's roads, reused across runs (never dropped by the clean-up)."""
    from tests.malta import MALTA, ensure_malta

    if not MALTA.exists():
        pytest.skip(f"{MALTA} is not here (../shared/data, see its MANIFEST.md)")
    return ensure_malta()


@pytest.fixture(scope="module")
def malta(malta_db: str) -> Iterator[str]:
    """Malta's database, with Malta's extent and metric CRS set for the module (then restored)."""
    from tests.malta import malta_settings

    with malta_settings():
        yield malta_db
