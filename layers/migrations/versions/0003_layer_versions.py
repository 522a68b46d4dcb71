"""Layer versions: a counter per table, bumped by triggers on every change.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25

Caches key on these counters (the routing engine's networks; tiles later) instead of scanning
tables for changes: ``SELECT version FROM layer_versions WHERE layer = 'roads'``.
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TABLES = (
    "roads",
    "intersections",
    "signals",
    "pipelines",
    "pipe_nodes",
    "power_lines",
    "power_nodes",
    "cameras",
    "resources",
    "buildings",
    "districts",
    "incidents",
    "closures",
    "live_speeds",
    "routing_speeds",
    "routing_profiles",
)


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE layer_versions (
            layer text PRIMARY KEY,
            version bigint NOT NULL DEFAULT 0,
            changed_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    values = ", ".join(f"('{table}')" for table in TABLES)
    op.execute(f"INSERT INTO layer_versions (layer) VALUES {values}")
    op.execute(
        """
        CREATE FUNCTION bump_layer_version() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            UPDATE layer_versions SET version = version + 1, changed_at = clock_timestamp()
            WHERE layer = TG_TABLE_NAME;
            RETURN NULL;
        END
        $$
        """
    )
    for table in TABLES:
        op.execute(
            f"CREATE TRIGGER {table}_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE "
            f"ON {table} FOR EACH STATEMENT EXECUTE FUNCTION bump_layer_version()"
        )


def downgrade() -> None:
    for table in TABLES:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_version ON {table}")
    op.execute("DROP FUNCTION IF EXISTS bump_layer_version()")
    op.execute("DROP TABLE IF EXISTS layer_versions")
