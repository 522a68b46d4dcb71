"""A stored, indexed Web Mercator geometry per layer, for vector tiles; paging indexes.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25

Tiles are cut in EPSG:3857; a generated column keeps every feature's geometry there, with its
own GiST index, so a tile query never transforms the whole table.
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
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
)


def upgrade() -> None:
    for table in TABLES:
        op.execute(
            f"ALTER TABLE {table} ADD COLUMN geom_3857 geometry "
            "GENERATED ALWAYS AS (ST_Transform(geom, 3857)) STORED"
        )
        op.execute(f"CREATE INDEX {table}_geom_3857_idx ON {table} USING gist (geom_3857)")
        # feature pages are ordered by (id, vid)
        op.execute(f"CREATE INDEX {table}_id_vid_idx ON {table} (id, vid)")


def downgrade() -> None:
    for table in TABLES:
        op.execute(f"DROP INDEX IF EXISTS {table}_id_vid_idx")
        op.execute(f"ALTER TABLE {table} DROP COLUMN IF EXISTS geom_3857")
