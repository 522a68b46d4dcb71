"""Data sources: the attribution and licence of every source the twin's data came from.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01

``data_sources`` has one row per source label — the same text layer features carry in their
``source`` column and rasters in theirs (``osm``, ``srtm``, ``derived:pipes`` ...) — with the
credit its licence asks for (``attribution``, e.g. "© OpenStreetMap contributors"), the licence
as an SPDX identifier (``ODbL-1.0``, ``CC-BY-4.0``; NULL when unknown or public domain, which
SPDX has no identifier for), a URL, and what the source is when the credit does not say it
(``description``: "derived from the OpenStreetMap streets, not surveyed"). Imports record it
(:func:`layers.sources.record_source`, an upsert in the import's own transaction); the viewer,
TileJSON and styles credit exactly the sources of what is loaded (:func:`layers.sources.credits`).

It is public information: ``twin_reader`` (migration 0012) may read it, like the catalog.
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE data_sources (
            source text PRIMARY KEY CHECK (length(source) BETWEEN 1 AND 200),
            attribution text NOT NULL CHECK (length(btrim(attribution)) > 0),
            licence text,
            url text,
            description text,
            recorded_at timestamptz NOT NULL DEFAULT clock_timestamp()
        );
        GRANT SELECT ON data_sources TO twin_reader;
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS data_sources")
