"""Routing profiles, live speeds and the routing_edges views.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25

``routing_edges`` (car) and ``routing_edges_emergency`` expose, per current road edge, exactly the
costs the routing engine uses, in pgRouting's shape (``id, source, target, cost, reverse_cost,
geom``; cost in seconds, ``reverse_cost = -1`` on one-way edges), so ``pgr_dijkstra`` can be run
on the same graph. Speed, in order: the live speed of the edge (``live_speeds``), its ``maxspeed``,
the profile's speed for its class, the profile's default; times the profile's factor.
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

CAR = {
    "motorway": 110,
    "motorway_link": 60,
    "trunk": 90,
    "trunk_link": 50,
    "primary": 50,
    "primary_link": 40,
    "secondary": 50,
    "secondary_link": 40,
    "tertiary": 40,
    "tertiary_link": 30,
    "unclassified": 30,
    "residential": 30,
    "living_street": 10,
    "service": 15,
}


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE routing_profiles (
            profile text PRIMARY KEY,
            factor double precision NOT NULL CHECK (factor > 0),
            default_speed_kmh double precision NOT NULL CHECK (default_speed_kmh > 0),
            description text NOT NULL
        )
        """
    )
    op.execute(
        """
        INSERT INTO routing_profiles VALUES
            ('car', 1.0, 30, 'Ordinary traffic at the speed limit.'),
            ('emergency', 1.25, 30,
             'Blue-light vehicles: 25% above the speed limit, one-way streets still one-way.')
        """
    )
    op.execute(
        """
        CREATE TABLE routing_speeds (
            class text PRIMARY KEY,
            speed_kmh double precision NOT NULL CHECK (speed_kmh > 0)
        )
        """
    )
    values = ", ".join(f"('{name}', {speed})" for name, speed in CAR.items())
    op.execute(f"INSERT INTO routing_speeds VALUES {values}")
    op.execute(
        """
        CREATE TABLE live_speeds (
            road_id text PRIMARY KEY,
            speed_kmh double precision NOT NULL CHECK (speed_kmh > 0),
            observed_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        """
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
            WHERE r.valid_to IS NULL
        )
        SELECT profile, id, road_id, source, target, length_m, speed_kmh,
               length_m / (speed_kmh / 3.6) AS cost,
               CASE WHEN oneway THEN -1 ELSE length_m / (speed_kmh / 3.6) END AS reverse_cost,
               name, class, geom
        FROM edges
        """
    )
    for view, profile in (("routing_edges", "car"), ("routing_edges_emergency", "emergency")):
        op.execute(
            f"""
            CREATE VIEW {view} AS
            SELECT id, source, target, cost, reverse_cost, geom
            FROM routing_edges_all WHERE profile = '{profile}'
            """
        )


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS routing_edges_emergency, routing_edges, routing_edges_all")
    op.execute("DROP TABLE IF EXISTS live_speeds, routing_speeds, routing_profiles")
