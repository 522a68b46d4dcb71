"""Live state: free-flow speeds in the routing view, live congestion, live vehicle positions.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30

``routing_edges_all`` (migrations 0002 and 0009) gains two columns at its end:
``free_flow_kmh``, the edge's speed before any live speed and profile factor (its ``maxspeed``,
else the profile's speed for its class, else the profile's default), and ``factor``, the
profile's. The routing engine loads them once and turns each new set of live speeds into edge
costs itself, by the view's own formula, ``length_m / (COALESCE(live, free_flow) * factor /
3.6)``, instead of reading the whole view again (:mod:`routing.router`).

``live_congestion`` is a read-only layer: every current road with an unexpired live speed,
its observed speed, its free-flow speed (the rule above, for the ``car`` profile, whose
factor is 1) and their ratio, the congestion index (1: traffic at free flow; near 0: stopped;
above 1: faster than the limit). It has the columns of a layer table (``vid``, ``id``,
``source``, ``valid_from`` = when the speed was observed, ``valid_to`` always null, ``props``,
``geom``, ``geom_3857``), so features and tiles read it as they read the stored layers. Its
counter in ``layer_versions`` moves with every change of ``live_speeds``, ``roads``,
``routing_speeds`` and ``routing_profiles``, so caches keyed on it (tiles, ETags) stay exact;
a speed that expires leaves the view at once and moves the counter when it is deleted
(``twin.live.traffic.expire_speeds``, run every few seconds by the live service).

``live_positions`` holds the newest unexpired position of each resource an AVL feed moves
(``twin.live.vehicles``); the ``resources`` layer keeps its versioned history untouched, and
dispatch reads the live position over the stored one while it lasts.
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

#: Tables whose changes change what ``live_congestion`` shows.
CONGESTION_SOURCES = ("live_speeds", "roads", "routing_speeds", "routing_profiles")

_ROUTING_VIEW = """
CREATE OR REPLACE VIEW routing_edges_all AS
WITH edges AS (
    SELECT p.profile, r.vid AS id, r.id AS road_id, r.source_node AS source,
           r.target_node AS target, r.oneway, r.name, r.class, r.geom,
           ST_Length(r.geom::geography) AS length_m,
           COALESCE(l.speed_kmh, r.maxspeed, s.speed_kmh, p.default_speed_kmh)
               * p.factor AS speed_kmh,
           COALESCE(r.maxspeed, s.speed_kmh, p.default_speed_kmh) AS free_flow_kmh,
           p.factor
    FROM roads r
    CROSS JOIN routing_profiles p
    LEFT JOIN routing_speeds s ON s.class = r.class
    LEFT JOIN live_speeds l ON l.road_id = r.id
        AND (l.expires_at IS NULL OR l.expires_at > now())
    WHERE r.valid_to IS NULL
)
SELECT profile, id, road_id, source, target, length_m, speed_kmh,
       length_m / (speed_kmh / 3.6) AS cost,
       CASE WHEN oneway THEN -1 ELSE length_m / (speed_kmh / 3.6) END AS reverse_cost,
       name, class, geom, free_flow_kmh, factor
FROM edges
"""

_ROUTING_VIEW_0009 = """
CREATE VIEW routing_edges_all AS
WITH edges AS (
    SELECT p.profile, r.vid AS id, r.id AS road_id, r.source_node AS source,
           r.target_node AS target, r.oneway, r.name, r.class, r.geom,
           ST_Length(r.geom::geography) AS length_m,
           COALESCE(l.speed_kmh, r.maxspeed, s.speed_kmh, p.default_speed_kmh)
               * p.factor AS speed_kmh
    FROM roads r
    CROSS JOIN routing_profiles p
    LEFT JOIN routing_speeds s ON s.class = r.class
    LEFT JOIN live_speeds l ON l.road_id = r.id
        AND (l.expires_at IS NULL OR l.expires_at > now())
    WHERE r.valid_to IS NULL
)
SELECT profile, id, road_id, source, target, length_m, speed_kmh,
       length_m / (speed_kmh / 3.6) AS cost,
       CASE WHEN oneway THEN -1 ELSE length_m / (speed_kmh / 3.6) END AS reverse_cost,
       name, class, geom
FROM edges
"""


def upgrade() -> None:
    op.execute(_ROUTING_VIEW)
    op.execute(
        """
        CREATE VIEW live_congestion AS
        SELECT r.vid, r.id, 'live_speeds'::text AS source, l.observed_at AS valid_from,
               NULL::timestamptz AS valid_to, '{}'::jsonb AS props, r.geom,
               r.name, r.class, l.speed_kmh, f.free_flow_kmh,
               l.speed_kmh / f.free_flow_kmh AS congestion, l.observed_at, l.expires_at,
               r.geom_3857
        FROM live_speeds l
        JOIN roads r ON r.id = l.road_id AND r.valid_to IS NULL
        JOIN routing_profiles p ON p.profile = 'car'
        LEFT JOIN routing_speeds s ON s.class = r.class
        CROSS JOIN LATERAL (
            SELECT COALESCE(r.maxspeed, s.speed_kmh, p.default_speed_kmh) AS free_flow_kmh
        ) f
        WHERE l.expires_at IS NULL OR l.expires_at > now()
        """
    )
    op.execute(
        """
        CREATE TABLE live_positions (
            resource_id text PRIMARY KEY,
            geom geometry(Point, 4326) NOT NULL,
            observed_at timestamptz NOT NULL,
            expires_at timestamptz NOT NULL
        );
        CREATE INDEX live_positions_expires ON live_positions (expires_at);
        CREATE INDEX live_speeds_expires ON live_speeds (expires_at);
        INSERT INTO layer_versions (layer) VALUES ('live_positions'), ('live_congestion');
        CREATE TRIGGER live_positions_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
            ON live_positions FOR EACH STATEMENT EXECUTE FUNCTION bump_layer_version();

        -- the counter of a layer other than the table changed: TG_ARGV[0]
        CREATE FUNCTION bump_derived_layer_version() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            UPDATE layer_versions SET version = version + 1, changed_at = clock_timestamp()
            WHERE layer = TG_ARGV[0];
            RETURN NULL;
        END
        $$;
        """
    )
    for table in CONGESTION_SOURCES:
        op.execute(
            f"CREATE TRIGGER {table}_live_congestion_version AFTER INSERT OR UPDATE OR DELETE "
            f"OR TRUNCATE ON {table} FOR EACH STATEMENT "
            "EXECUTE FUNCTION bump_derived_layer_version('live_congestion')"
        )


def downgrade() -> None:
    for table in CONGESTION_SOURCES:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_live_congestion_version ON {table}")
    op.execute("DROP FUNCTION IF EXISTS bump_derived_layer_version()")
    op.execute("DELETE FROM layer_versions WHERE layer IN ('live_positions', 'live_congestion')")
    op.execute("DROP INDEX IF EXISTS live_speeds_expires")
    op.execute("DROP TABLE IF EXISTS live_positions")
    op.execute("DROP VIEW IF EXISTS live_congestion")
    # a view loses columns only by being made again, with the views built on it
    op.execute("DROP VIEW IF EXISTS routing_edges_emergency, routing_edges, routing_edges_all")
    op.execute(_ROUTING_VIEW_0009)
    for view, profile in (("routing_edges", "car"), ("routing_edges_emergency", "emergency")):
        op.execute(
            f"""
            CREATE VIEW {view} AS
            SELECT id, source, target, cost, reverse_cost, geom
            FROM routing_edges_all WHERE profile = '{profile}'
            """
        )
