"""The city's own settings, written by ``twin city init``: name, extent, metric CRS.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01

``city_settings`` keeps every set of settings ``twin city init`` wrote, newest last: the city's
name, its extent (a box in EPSG:4326 and, when it was an administrative boundary, that
boundary), the projected CRS in metres used for lengths and areas, the file it came from and
the report of the load (per layer: features, what was clipped, what is missing). Every process
reading this database takes the newest row as its settings (:mod:`layers.settings`), below the
``TWIN_*`` environment variables, so a twin serves the city it was given without a
configuration file. Earlier rows stay: the settings, like the features, have a history.

It is public information: ``twin_reader`` (migration 0012) may read it.
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE city_settings (
            version bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            name text NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 200),
            bbox double precision[] NOT NULL CHECK (
                cardinality(bbox) = 4 AND bbox[1] < bbox[3] AND bbox[2] < bbox[4]
                AND bbox[1] >= -180 AND bbox[3] <= 180 AND bbox[2] >= -90 AND bbox[4] <= 90
            ),
            metric_crs text NOT NULL,
            boundary geometry(MultiPolygon, 4326),
            source text,
            report jsonb NOT NULL DEFAULT '{}',
            recorded_at timestamptz NOT NULL DEFAULT clock_timestamp()
        );
        GRANT SELECT ON city_settings TO twin_reader;
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS city_settings")
