"""The migrated schema agrees with the catalog; migrations are repeatable."""

from __future__ import annotations

import sqlalchemy as sa

from layers.catalog import COMMON_COLUMNS, DERIVED_COLUMNS, LAYERS
from layers.database import current_revision, get_engine, head_revision, upgrade
from tests.conftest import ROOT

VERSIONS = ROOT / "layers" / "migrations" / "versions"  # one file per revision, numbered

SQL_TYPES = {
    "text": "text",
    "int": "integer",
    "bigint": "bigint",
    "float": "double precision",
    "bool": "boolean",
    "json": "jsonb",
    "timestamp": "timestamp with time zone",
}


def test_every_layer_table_matches_the_catalog(db_url: str) -> None:
    with get_engine(db_url).connect() as conn:
        for layer in LAYERS.values():
            columns = dict(
                conn.execute(
                    sa.text(
                        "SELECT column_name, data_type FROM information_schema.columns "
                        "WHERE table_name = :t ORDER BY ordinal_position"
                    ),
                    {"t": layer.table},
                ).all()
            )
            assert list(columns) == [*COMMON_COLUMNS, *layer.field_names, *DERIVED_COLUMNS], (
                layer.id
            )
            for spec in layer.fields:
                expected = SQL_TYPES[spec.kind]
                assert columns[spec.name] in (
                    expected if isinstance(expected, tuple) else (expected,)
                )
            srid, kind = conn.execute(
                sa.text(
                    "SELECT srid, type FROM geometry_columns "
                    "WHERE f_table_name = :t AND f_geometry_column = 'geom'"
                ),
                {"t": layer.table},
            ).one()
            assert srid == 4326
            assert kind == layer.storage_type.upper()
            indexes = (
                conn.execute(
                    sa.text("SELECT indexdef FROM pg_indexes WHERE tablename = :t"),
                    {"t": layer.table},
                )
                .scalars()
                .all()
            )
            assert any("USING gist (geom)" in i for i in indexes), layer.id
            assert any("WHERE (valid_to IS NULL)" in i for i in indexes), layer.id


def test_required_and_enumerated_attributes_are_enforced_by_the_database(db_url: str) -> None:
    with get_engine(db_url).connect() as conn:
        checks = (
            conn.execute(
                sa.text(
                    "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                    "WHERE conrelid = 'pipe_nodes'::regclass AND contype = 'c'"
                )
            )
            .scalars()
            .all()
        )
        nullable = conn.execute(
            sa.text(
                "SELECT is_nullable FROM information_schema.columns "
                "WHERE table_name = 'roads' AND column_name = 'class'"
            )
        ).scalar_one()
    assert any("'hydrant'" in c for c in checks)
    assert nullable == "NO"


def test_upgrade_is_idempotent(db_url: str) -> None:
    newest = max(path.name[:4] for path in VERSIONS.glob("[0-9][0-9][0-9][0-9]_*.py"))
    assert upgrade(db_url) == head_revision() == current_revision(db_url) == newest
