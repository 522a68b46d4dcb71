"""The live twin's store: OGC SensorThings API v1.1 entities, observations, alerts.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30

SensorThings' data model (OGC 18-088, section 8) as tables: ``sta_things`` (each may be a twin
feature: ``layer`` and ``feature_id``), ``sta_locations``, ``sta_historical_locations``,
``sta_sensors``, ``sta_observed_properties``, ``sta_features_of_interest``,
``sta_datastreams`` (``unit_of_measurement`` as SensorThings writes it: name, symbol in UCUM,
definition) and ``sta_observations``.

Observations are never updated in place. They are partitioned by ``phenomenon_time``
(declarative range partitions of one UTC day, created ahead by the ingest and dropped after the
retention setting; ``layers.observations``), with a BRIN index on time. The primary key
``(datastream_id, phenomenon_time)`` stores a reading that arrives twice once. A numeric result
is in ``result``; any other (boolean, category, JSON) in ``result_json``.

``sta_latest`` keeps the newest observation of each datastream as it arrives, so the latest
state of a dashboard's 400 datastreams is one indexed read (FROST-Server issue #2323 is the
report of ``$orderby=phenomenonTime desc&$top=1`` per datastream not scaling).
``live_refusals`` counts refused readings by reason. ``live_alert_rules`` and ``live_alerts``
hold alert rules and alerts with their lifecycle (raised, acknowledged, resolved); one open
alert per rule and datastream. ``live_speeds`` (migration 0002) gains ``expires_at``: a live
speed older than the staleness setting no longer counts in ``routing_edges_all``.
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

OBSERVATION_TYPES = (
    "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Measurement",
    "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_CountObservation",
    "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_TruthObservation",
    "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_CategoryObservation",
    "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Observation",
)


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE sta_things (
            id bigserial PRIMARY KEY,
            name text NOT NULL,
            description text NOT NULL DEFAULT '',
            properties jsonb,
            layer text,
            feature_id text,
            CHECK ((layer IS NULL) = (feature_id IS NULL))
        );
        CREATE INDEX sta_things_feature ON sta_things (layer, feature_id);
        CREATE UNIQUE INDEX sta_things_name ON sta_things (name);

        CREATE TABLE sta_locations (
            id bigserial PRIMARY KEY,
            name text NOT NULL,
            description text NOT NULL DEFAULT '',
            encoding_type text NOT NULL DEFAULT 'application/geo+json',
            geom geometry(Geometry, 4326) NOT NULL,
            properties jsonb
        );
        CREATE INDEX sta_locations_geom ON sta_locations USING gist (geom);

        CREATE TABLE sta_thing_locations (
            thing_id bigint NOT NULL REFERENCES sta_things ON DELETE CASCADE,
            location_id bigint NOT NULL REFERENCES sta_locations ON DELETE CASCADE,
            PRIMARY KEY (thing_id, location_id)
        );
        CREATE INDEX sta_thing_locations_location ON sta_thing_locations (location_id);

        CREATE TABLE sta_historical_locations (
            id bigserial PRIMARY KEY,
            thing_id bigint NOT NULL REFERENCES sta_things ON DELETE CASCADE,
            time timestamptz NOT NULL
        );
        CREATE INDEX sta_historical_locations_thing ON sta_historical_locations (thing_id, time);
        CREATE TABLE sta_location_historical_locations (
            location_id bigint NOT NULL REFERENCES sta_locations ON DELETE CASCADE,
            historical_location_id bigint NOT NULL
                REFERENCES sta_historical_locations ON DELETE CASCADE,
            PRIMARY KEY (location_id, historical_location_id)
        );

        CREATE TABLE sta_sensors (
            id bigserial PRIMARY KEY,
            name text NOT NULL,
            description text NOT NULL DEFAULT '',
            encoding_type text NOT NULL DEFAULT 'text/html',
            metadata text NOT NULL DEFAULT '',
            properties jsonb
        );
        CREATE UNIQUE INDEX sta_sensors_name ON sta_sensors (name);

        CREATE TABLE sta_observed_properties (
            id bigserial PRIMARY KEY,
            name text NOT NULL,
            definition text NOT NULL DEFAULT '',
            description text NOT NULL DEFAULT '',
            properties jsonb
        );
        CREATE UNIQUE INDEX sta_observed_properties_name ON sta_observed_properties (name);

        CREATE TABLE sta_features_of_interest (
            id bigserial PRIMARY KEY,
            name text NOT NULL,
            description text NOT NULL DEFAULT '',
            encoding_type text NOT NULL DEFAULT 'application/geo+json',
            geom geometry(Geometry, 4326) NOT NULL,
            properties jsonb
        );
        """
    )
    types = ", ".join(f"'{t}'" for t in OBSERVATION_TYPES)
    op.execute(
        f"""
        CREATE TABLE sta_datastreams (
            id bigserial PRIMARY KEY,
            name text NOT NULL,
            description text NOT NULL DEFAULT '',
            observation_type text NOT NULL CHECK (observation_type IN ({types})),
            unit_of_measurement jsonb NOT NULL DEFAULT '{{}}'::jsonb,
            thing_id bigint NOT NULL REFERENCES sta_things ON DELETE CASCADE,
            sensor_id bigint NOT NULL REFERENCES sta_sensors,
            observed_property_id bigint NOT NULL REFERENCES sta_observed_properties,
            observed_area geometry(Geometry, 4326),
            properties jsonb
        );
        CREATE UNIQUE INDEX sta_datastreams_name ON sta_datastreams (name);
        CREATE INDEX sta_datastreams_thing ON sta_datastreams (thing_id);
        CREATE INDEX sta_datastreams_sensor ON sta_datastreams (sensor_id);
        CREATE INDEX sta_datastreams_property ON sta_datastreams (observed_property_id);
        """
    )
    op.execute(
        """
        CREATE SEQUENCE sta_observations_id_seq AS bigint;
        CREATE TABLE sta_observations (
            id bigint NOT NULL DEFAULT nextval('sta_observations_id_seq'),
            datastream_id bigint NOT NULL,
            phenomenon_time timestamptz NOT NULL,
            phenomenon_time_end timestamptz,
            result_time timestamptz,
            result double precision,
            result_json jsonb,
            result_quality jsonb,
            parameters jsonb,
            feature_of_interest_id bigint,
            received_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (datastream_id, phenomenon_time),
            CHECK (phenomenon_time_end IS NULL OR phenomenon_time_end >= phenomenon_time)
        ) PARTITION BY RANGE (phenomenon_time);
        ALTER SEQUENCE sta_observations_id_seq OWNED BY sta_observations.id;
        CREATE INDEX sta_observations_time ON sta_observations USING brin (phenomenon_time);
        CREATE INDEX sta_observations_id ON sta_observations (id);

        CREATE TABLE sta_latest (
            datastream_id bigint PRIMARY KEY REFERENCES sta_datastreams ON DELETE CASCADE,
            observation_id bigint NOT NULL,
            phenomenon_time timestamptz NOT NULL,
            result_time timestamptz,
            result double precision,
            result_json jsonb,
            result_quality jsonb,
            received_at timestamptz NOT NULL
        );

        CREATE TABLE live_refusals (
            reason text PRIMARY KEY,
            count bigint NOT NULL DEFAULT 0,
            last_at timestamptz NOT NULL DEFAULT now(),
            last_example text
        );

        CREATE TABLE live_alert_rules (
            id bigserial PRIMARY KEY,
            name text NOT NULL UNIQUE,
            kind text NOT NULL CHECK (kind IN ('threshold', 'rate', 'no_data')),
            datastream_id bigint REFERENCES sta_datastreams ON DELETE CASCADE,
            observed_property text,
            params jsonb NOT NULL DEFAULT '{}'::jsonb,
            severity text NOT NULL DEFAULT 'warning'
                CHECK (severity IN ('info', 'warning', 'critical')),
            enabled boolean NOT NULL DEFAULT true,
            created_at timestamptz NOT NULL DEFAULT now(),
            CHECK ((datastream_id IS NULL) <> (observed_property IS NULL))
        );

        CREATE TABLE live_alerts (
            id bigserial PRIMARY KEY,
            rule_id bigint NOT NULL REFERENCES live_alert_rules ON DELETE CASCADE,
            datastream_id bigint NOT NULL REFERENCES sta_datastreams ON DELETE CASCADE,
            state text NOT NULL DEFAULT 'raised'
                CHECK (state IN ('raised', 'acknowledged', 'resolved')),
            severity text NOT NULL,
            message text NOT NULL,
            value double precision,
            raised_at timestamptz NOT NULL,
            acknowledged_at timestamptz,
            acknowledged_by text,
            resolved_at timestamptz,
            resolved_by text,
            layer text,
            feature_id text,
            impact jsonb
        );
        CREATE UNIQUE INDEX live_alerts_open ON live_alerts (rule_id, datastream_id)
            WHERE state <> 'resolved';
        CREATE INDEX live_alerts_state ON live_alerts (state, raised_at DESC);

        ALTER TABLE live_speeds ADD COLUMN expires_at timestamptz;
        """
    )
    # the routing view of migration 0002, with live speeds counted only until they expire
    op.execute(
        """
        CREATE OR REPLACE VIEW routing_edges_all AS
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
    )


def downgrade() -> None:
    op.execute(
        """
        CREATE OR REPLACE VIEW routing_edges_all AS
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
    op.execute("ALTER TABLE live_speeds DROP COLUMN IF EXISTS expires_at")
    op.execute(
        "DROP TABLE IF EXISTS live_alerts, live_alert_rules, live_refusals, sta_latest, "
        "sta_observations, sta_datastreams, sta_features_of_interest, sta_observed_properties, "
        "sta_sensors, sta_location_historical_locations, sta_historical_locations, "
        "sta_thing_locations, sta_locations, sta_things CASCADE"
    )
    op.execute("DROP SEQUENCE IF EXISTS sta_observations_id_seq")
