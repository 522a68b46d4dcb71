"""What-if scenarios: named overlays of edits over the twin, never touching the base.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-01

``scenarios`` names each overlay, with who made it, what it is for, its status and the moment of
the twin it is built on (NULL: the live twin). ``scenario_edits`` holds its edits, versioned as
features are (``valid_from`` / ``valid_to``; changing an edit closes its row and opens another):
one row per feature the scenario adds, changes (the whole new feature) or retires. The layer
tables are not touched: :mod:`layers.scenarios` reads a layer in a scenario as the base rows
the scenario does not edit plus the scenario's own. ``revision`` grows with every edit, so a
cache keyed on it (tiles) never serves a scenario's older state. Scenarios are a guarded
resource of the access rules (``scenarios``, level 1): reading them takes ``read``, making and
changing them ``edit`` (planners, traffic engineers, commanders), another's ``admin``.
"""

from __future__ import annotations

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        r"""
        CREATE TABLE scenarios (
            id serial PRIMARY KEY,
            name text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
            title text NOT NULL DEFAULT '',
            description text NOT NULL DEFAULT '',
            author text NOT NULL DEFAULT '',
            status text NOT NULL DEFAULT 'draft'
                CHECK (status IN ('draft', 'active', 'archived')),
            base_at timestamptz,
            settings jsonb NOT NULL DEFAULT '{}'::jsonb,
            created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
            updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
            revision bigint NOT NULL DEFAULT 0
        );
        CREATE TABLE scenario_edits (
            eid bigserial PRIMARY KEY,
            scenario_id integer NOT NULL REFERENCES scenarios (id) ON DELETE CASCADE,
            layer text NOT NULL,
            feature_id text NOT NULL,
            op text NOT NULL CHECK (op IN ('add', 'change', 'retire')),
            source text NOT NULL DEFAULT 'scenario',
            row jsonb NOT NULL DEFAULT '{}'::jsonb,
            geom geometry(Geometry, 4326),
            -- what tiles are cut from, indexed as the layer tables' (migration 0004)
            geom_3857 geometry GENERATED ALWAYS AS (ST_Transform(geom, 3857)) STORED,
            author text NOT NULL DEFAULT '',
            note text NOT NULL DEFAULT '',
            valid_from timestamptz NOT NULL DEFAULT clock_timestamp(),
            valid_to timestamptz,
            CHECK (op = 'retire' OR geom IS NOT NULL)
        );
        -- one current edit per feature of a layer in a scenario; the overlay's anti-join
        CREATE UNIQUE INDEX scenario_edits_current
            ON scenario_edits (scenario_id, layer, feature_id) WHERE valid_to IS NULL;
        CREATE INDEX scenario_edits_history ON scenario_edits (scenario_id, valid_from);
        CREATE INDEX scenario_edits_geom_3857 ON scenario_edits USING gist (geom_3857);
        CREATE INDEX scenario_edits_geom ON scenario_edits USING gist (geom);
        -- read through the overlay under any clearance (layers.database.cursor's reader role);
        -- the masks and row rules of the layer apply to the scenario's rows as to the base's
        GRANT SELECT ON scenarios, scenario_edits TO twin_reader;
        """
    )
    # a counter in layer_versions (NOTIFYed, migration 0016) that moves with every change of a
    # scenario or its edits: readers keep scenarios in memory while it stands
    op.execute(
        """
        INSERT INTO layer_versions (layer) VALUES ('scenarios') ON CONFLICT (layer) DO NOTHING;
        CREATE TRIGGER scenarios_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
            ON scenarios FOR EACH STATEMENT
            EXECUTE FUNCTION bump_derived_layer_version('scenarios');
        CREATE TRIGGER scenario_edits_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
            ON scenario_edits FOR EACH STATEMENT
            EXECUTE FUNCTION bump_derived_layer_version('scenarios');
        """
    )
    # scenarios are a guarded resource (layers.access.FEEDS): general (level 1), read by every
    # role cleared for it ('*' read), made and changed by planners, traffic engineers and
    # commanders; administrators change anyone's ('*' admin)
    op.execute(
        """
        INSERT INTO access_layers (layer, level) VALUES ('scenarios', 1)
        ON CONFLICT (layer) DO NOTHING;
        INSERT INTO access_permissions (role, layer, permission)
        SELECT name, 'scenarios', 'edit' FROM access_roles
        WHERE name IN ('planner', 'traffic_engineer', 'emergency_commander')
        ON CONFLICT DO NOTHING;
        """
    )


def downgrade() -> None:
    op.execute("DELETE FROM layer_versions WHERE layer = 'scenarios'")
    op.execute("DELETE FROM access_permissions WHERE layer = 'scenarios'")
    op.execute("DELETE FROM access_layers WHERE layer = 'scenarios'")
    op.execute("DROP TABLE IF EXISTS scenario_edits")
    op.execute("DROP TABLE IF EXISTS scenarios")
