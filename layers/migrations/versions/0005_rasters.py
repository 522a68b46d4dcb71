"""Rasters: versioned GeoTIFFs (DEM, flood depth, population density) stored in the database.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26

PostGIS stays the system of record for rasters too, without ``postgis_raster`` (its GDAL
drivers are off by default): each version of a raster is one row holding the GeoTIFF's bytes
and what queries need without opening it (CRS, footprint in EPSG:4326, size, type, nodata,
unit, SHA-256). Like layer features, a name has at most one current version
(``valid_to IS NULL``); re-ingesting a name closes the previous one. Changes bump the
``rasters`` counter in ``layer_versions`` (migration 0003), so caches can key on it.
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE rasters (
            vid bigserial PRIMARY KEY,
            name text NOT NULL CHECK (name ~ '^[a-z][a-z0-9_]{0,62}$'),
            kind text NOT NULL CHECK (kind IN ('dem', 'flood_depth', 'population_density')),
            source text NOT NULL,
            valid_from timestamptz NOT NULL DEFAULT clock_timestamp(),
            valid_to timestamptz CHECK (valid_to IS NULL OR valid_to >= valid_from),
            crs text NOT NULL,
            bounds geometry(Polygon, 4326) NOT NULL,
            width integer NOT NULL CHECK (width > 0),
            height integer NOT NULL CHECK (height > 0),
            dtype text NOT NULL,
            nodata double precision,
            unit text,
            sha256 text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
            data bytea NOT NULL
        )
        """
    )
    # GeoTIFFs are compressed already: store them out of line without trying pglz on them
    op.execute("ALTER TABLE rasters ALTER COLUMN data SET STORAGE EXTERNAL")
    op.execute("CREATE UNIQUE INDEX rasters_current_idx ON rasters (name) WHERE valid_to IS NULL")
    op.execute("CREATE INDEX rasters_name_valid_idx ON rasters (name, valid_from)")
    op.execute("CREATE INDEX rasters_bounds_idx ON rasters USING gist (bounds)")
    op.execute("INSERT INTO layer_versions (layer) VALUES ('rasters')")
    op.execute(
        "CREATE TRIGGER rasters_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE "
        "ON rasters FOR EACH STATEMENT EXECUTE FUNCTION bump_layer_version()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS rasters_version ON rasters")
    op.execute("DELETE FROM layer_versions WHERE layer = 'rasters'")
    op.execute("DROP TABLE IF EXISTS rasters")
