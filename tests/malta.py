"""Malta's whole road network as a test fixture: imported once, cached across test runs.

Malta (``../shared/data/malta/malta-latest.osm.pbf``, OpenStreetMap) gives 33,582 roads and
57,061 directed edges, and 81 emergency resources (9 fire stations, 18 hospitals, 54 police): the city-scale network the routing engine is checked on. Importing it
takes about a minute, so the database is kept between runs: it is named after a hash of the
extract and of the migrations (``<name>_test_malta_<hash>``), which the per-run clean-up of
``tests/conftest.py`` never drops (its pattern needs a run token there), and it is reused when its
``city_settings`` row — written last, after the roads — is present. A changed extract or a new
migration gives a new name; the databases of older hashes are dropped when a new one is built.

The settings (extent, metric CRS) are process-global (:func:`layers.settings.get_settings` is
cached), so :func:`malta_settings` sets them for a block and restores what was there before.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from layers.database import database_url, drop_database, get_engine, upgrade
from layers.settings import get_settings

ROOT = Path(__file__).resolve().parent.parent
MALTA = ROOT.parent / "shared" / "data" / "malta" / "malta-latest.osm.pbf"
#: Malta's extent (min lon, min lat, max lon, max lat; EPSG:4326) and metric CRS (UTM 33N).
BBOX = (14.1, 35.7, 14.7, 36.15)
METRIC_CRS = "EPSG:32633"
MIGRATIONS = ROOT / "layers" / "migrations" / "versions"
#: Bump to rebuild the cached database when this module's import changes.
_FORMAT = "2"


def fingerprint() -> str:
    """Hash of the extract, the migrations and this fixture's format (12 hex digits)."""
    digest = hashlib.sha1(_FORMAT.encode())
    digest.update(MALTA.read_bytes())
    for path in sorted(MIGRATIONS.glob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _admin(base: sa.engine.URL) -> sa.engine.Engine:
    return sa.create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")


def _complete(url: str) -> bool:
    """True when the database exists and its import finished (its city_settings row)."""
    target = make_url(database_url(url))
    engine = _admin(target)
    try:
        with engine.connect() as conn:
            exists = conn.execute(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :name"),
                {"name": target.database},
            ).first()
    finally:
        engine.dispose()
    if exists is None:
        return False
    probe = sa.create_engine(target)
    try:
        with probe.connect() as conn:
            row = conn.execute(
                sa.text(
                    "SELECT 1 FROM information_schema.tables WHERE table_name = 'city_settings'"
                )
            ).first()
            if row is None:
                return False
            return (
                conn.execute(
                    sa.text("SELECT 1 FROM city_settings WHERE source = :source"),
                    {"source": MALTA.name},
                ).first()
                is not None
            )
    finally:
        probe.dispose()


def malta_url(base_url: str | None = None) -> str:
    """URL of the cached Malta database on the server of ``base_url`` (configured by default)."""
    base = make_url(database_url(base_url or os.environ.get("TWIN_DATABASE_URL")))
    name = f"{base.database}_test_malta_{fingerprint()}"
    return base.set(database=name).render_as_string(hide_password=False)


def ensure_malta(base_url: str | None = None) -> str:
    """Return the URL of a database holding Malta's roads, importing them if needed.

    Two runs building at once wait for each other (an advisory lock on the server); the
    databases of other fingerprints are dropped when a new one is built.

    Parameters
    ----------
    base_url
        A URL on the server to use; ``TWIN_DATABASE_URL`` (or the local default) when None.

    Returns
    -------
    str
        The Malta database's URL.
    """
    url = malta_url(base_url)
    if _complete(url):
        return url
    target = make_url(url)
    admin = _admin(target)
    key = int.from_bytes(hashlib.sha1(b"twin-tests-malta").digest()[:8], "big", signed=True)
    try:
        with admin.connect() as conn:
            conn.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": key})
            try:
                if not _complete(url):
                    prefix = str(target.database).rsplit("_", 1)[0] + "_"
                    names = conn.execute(sa.text("SELECT datname FROM pg_database")).scalars()
                    for name in list(names):
                        if name.startswith(prefix) and name != target.database:
                            drop_database(
                                target.set(database=name).render_as_string(hide_password=False)
                            )
                    _build(url)
            finally:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": key})
    finally:
        admin.dispose()
    return url


def _build(url: str) -> None:
    """Import Malta's roads into a fresh database and mark it complete."""
    from layers.ingest import ingest_frame
    from layers.osm import read_osm

    drop_database(url)
    upgrade(url)
    with malta_settings():
        frames = read_osm(MALTA, ["roads", "resources"])
        for layer in ("roads", "resources"):  # 33,582 roads; 9 fire stations, 18 hospitals...
            ingest_frame(layer, frames[layer], source=MALTA.name, url=url)
    with get_engine(url).begin() as conn:  # last: its presence says the import is complete
        conn.execute(
            sa.text(
                "INSERT INTO city_settings (name, bbox, metric_crs, source) "
                "VALUES ('Malta', :bbox, :crs, :source)"
            ),
            {"bbox": list(BBOX), "crs": METRIC_CRS, "source": MALTA.name},
        )
    get_engine(url).dispose()


@contextmanager
def malta_settings() -> Iterator[None]:
    """Run a block with Malta's extent and metric CRS; the settings before are restored.

    Yields
    ------
    None
    """
    names = ("TWIN_CITY_BBOX", "TWIN_METRIC_CRS", "TWIN_CITY_NAME")
    before = {name: os.environ.get(name) for name in names}
    os.environ["TWIN_CITY_BBOX"] = json.dumps(list(BBOX))
    os.environ["TWIN_METRIC_CRS"] = METRIC_CRS
    os.environ["TWIN_CITY_NAME"] = "Malta"
    get_settings.cache_clear()
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        get_settings.cache_clear()
