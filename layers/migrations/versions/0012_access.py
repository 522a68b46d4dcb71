"""Access control: roles with a clearance, layer and row classification, masks, sign-in.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30

Who may see what is data in the store, never code (:mod:`layers.access` reads it):

- ``access_roles``: a role and its clearance, on the scale of GB/T 43697-2024 with an open level
  below it: 0 public (公开), 1 general (一般), 2 important (重要), 3 core (核心).
- ``access_layers``: each layer's classification (and of ``observations``, the live feeds:
  SensorThings and ``/live``, read and written as a layer is); a caller sees the layer only when its
  clearance is at or above it. Level 0 is a public layer: anonymous callers see it.
- ``access_rows``: rows of a layer classified above the layer (``network`` in ``{gas}`` of the
  pipelines is important): hidden from callers below that level.
- ``access_masks``: an attribute (a typed column, ``props`` or ``props.<key>``, or ``geom``)
  masked for callers below a level (optionally for one role only): ``hide``, ``partial``
  (keep ``keep_start`` and ``keep_end`` characters, PostgreSQL Anonymizer's ``partial()``),
  ``round`` (to a multiple of ``step``), ``snap`` (a geometry shown as a point on a
  ``step``-metre grid of the city's metric CRS).
- ``access_permissions``: what a role may do on a layer (``*`` for every layer): ``read``,
  ``edit``, ``admin`` (each includes the ones before it). Reading also needs the clearance.
- ``access_users``, ``access_api_keys``, ``access_tokens``, ``access_signing_keys``: the local
  issuer's users (argon2 password hashes), API keys (hashed), issued tokens (for revocation) and
  its signing keys (Ed25519; their public halves are the JWKS).

Every change to the rules moves the ``access`` counter in ``layer_versions`` (caches of masked
tiles and features key on it) and regenerates the row-level security policies.

The second wall is PostgreSQL's row-level security. ``twin_reader`` is the database role every
API read runs as (``SET LOCAL ROLE`` with the caller's clearance in ``twin.clearance``, see
:func:`layers.database.cursor`): on every classified table a policy lets it read only the rows
at or below that clearance, so a query that forgets the access filter still cannot read above
it. ``twin_reader`` cannot read the sign-in tables nor the audit log at all.
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

LAYERS = (
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
SECRET_TABLES = (
    "access_users",
    "access_api_keys",
    "access_tokens",
    "access_signing_keys",
    "audit_log",
    "audit_chain",
)

# (role, clearance, description)
ROLES = (
    ("public", 0, "Anyone, signed in or not: public layers only"),
    ("planner", 1, "City planners: general layers, masked personal data"),
    ("analyst", 1, "Analysts: general layers, masked personal data"),
    ("traffic_engineer", 1, "Traffic engineers: edit closures and signal plans"),
    ("emergency_commander", 2, "Emergency command: important layers, edit incidents"),
    ("sensor_gateway", 1, "Systems that post sensor observations (SensorThings, API keys)"),
    ("administrator", 3, "Administrators: every layer, every rule"),
)
# (layer, level)
LEVELS = (
    ("roads", 0),
    ("intersections", 0),
    ("signals", 0),
    ("districts", 0),
    ("buildings", 0),
    ("closures", 0),
    ("live_congestion", 0),
    ("resources", 0),
    ("incidents", 1),
    ("cameras", 1),
    ("pipelines", 1),
    ("pipe_nodes", 1),
    ("power_nodes", 1),
    ("power_lines", 2),
    ("observations", 1),  # the live feeds: SensorThings and /live (not a collection)
)
# (layer, attribute, values, level)
ROWS = (
    ("resources", "kind", "{vehicle}", 1),
    ("pipelines", "network", "{gas}", 2),
    ("pipe_nodes", "network", "{gas}", 2),
)
# (layer, attribute, method, step, keep_start, keep_end, level)
MASKS = (
    ("buildings", "population", "round", 10, None, None, 1),
    ("districts", "population", "round", 10, None, None, 1),
    ("buildings", "props.phone", "partial", None, 3, 2, 2),
    ("resources", "props.phone", "partial", None, 3, 2, 2),
    ("resources", "status", "hide", None, None, None, 1),
    ("cameras", "owner", "partial", None, 1, 0, 2),
    ("cameras", "heading", "hide", None, None, None, 2),
    ("cameras", "fov", "hide", None, None, None, 2),
    ("cameras", "range_m", "hide", None, None, None, 2),
    ("cameras", "props", "hide", None, None, None, 2),  # OSM's direction, derived defaults
    ("pipelines", "depth_m", "hide", None, None, None, 2),
    ("power_nodes", "geom", "snap", 100, None, None, 2),
    ("power_nodes", "props", "hide", None, None, None, 2),
)
# (role, layer, permission)
PERMISSIONS = (
    *((role, "*", "read") for role, _, _ in ROLES),
    ("administrator", "*", "admin"),
    ("emergency_commander", "incidents", "edit"),
    ("emergency_commander", "closures", "edit"),
    ("emergency_commander", "resources", "edit"),
    ("traffic_engineer", "closures", "edit"),
    ("traffic_engineer", "signals", "edit"),
    ("emergency_commander", "observations", "edit"),  # acknowledge and resolve alerts
    ("sensor_gateway", "observations", "edit"),
)


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE access_roles (
            name text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_]{0,62}$'),
            clearance int NOT NULL CHECK (clearance BETWEEN 0 AND 3),
            description text NOT NULL DEFAULT ''
        );
        CREATE TABLE access_layers (
            layer text PRIMARY KEY,
            level int NOT NULL CHECK (level BETWEEN 0 AND 3)
        );
        CREATE TABLE access_rows (
            id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            layer text NOT NULL,
            attribute text NOT NULL CHECK (attribute ~ '^[a-z_][a-z0-9_]*$'),
            "values" text[] NOT NULL,
            level int NOT NULL CHECK (level BETWEEN 0 AND 3)
        );
        CREATE TABLE access_masks (
            id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            layer text NOT NULL,
            attribute text NOT NULL CHECK (attribute ~ '^[a-z_][a-z0-9_]*(\\.[^\\s]+)?$'),
            method text NOT NULL CHECK (method IN ('hide', 'partial', 'round', 'snap')),
            step double precision CHECK (step > 0),
            keep_start int CHECK (keep_start >= 0),
            keep_end int CHECK (keep_end >= 0),
            level int NOT NULL CHECK (level BETWEEN 0 AND 3),
            role text REFERENCES access_roles (name) ON DELETE CASCADE,
            CHECK (method NOT IN ('round', 'snap') OR step IS NOT NULL),
            CHECK (method <> 'snap' OR attribute = 'geom')
        );
        CREATE TABLE access_permissions (
            role text NOT NULL REFERENCES access_roles (name) ON DELETE CASCADE,
            layer text NOT NULL,
            permission text NOT NULL CHECK (permission IN ('read', 'edit', 'admin')),
            PRIMARY KEY (role, layer, permission)
        );
        CREATE TABLE access_users (
            name text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9_.@-]{1,64}$'),
            password_hash text,
            roles text[] NOT NULL DEFAULT '{}',
            disabled boolean NOT NULL DEFAULT false,
            created_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE access_api_keys (
            id text PRIMARY KEY,
            user_name text NOT NULL REFERENCES access_users (name) ON DELETE CASCADE,
            key_hash text NOT NULL,
            label text NOT NULL DEFAULT '',
            created_at timestamptz NOT NULL DEFAULT now(),
            expires_at timestamptz,
            revoked_at timestamptz
        );
        CREATE TABLE access_tokens (
            jti text PRIMARY KEY,
            user_name text NOT NULL REFERENCES access_users (name) ON DELETE CASCADE,
            issued_at timestamptz NOT NULL DEFAULT now(),
            expires_at timestamptz NOT NULL,
            revoked_at timestamptz
        );
        CREATE INDEX access_tokens_revoked ON access_tokens (revoked_at)
            WHERE revoked_at IS NOT NULL;
        CREATE TABLE access_signing_keys (
            kid text PRIMARY KEY,
            private_pem text NOT NULL,
            public_jwk jsonb NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            retired_at timestamptz
        );
        INSERT INTO layer_versions (layer) VALUES ('access') ON CONFLICT DO NOTHING;

        -- the caller's clearance, set per transaction by the API (-1: none, nothing visible)
        CREATE FUNCTION twin_clearance() RETURNS int LANGUAGE sql STABLE AS $$
            SELECT coalesce(nullif(current_setting('twin.clearance', true), '')::int, -1)
        $$;

        -- one policy per classified table, rebuilt from access_layers and access_rows
        CREATE FUNCTION twin_apply_row_security() RETURNS void LANGUAGE plpgsql AS $$
        DECLARE
            l record;
            r record;
            condition text;
        BEGIN
            FOR l IN
                SELECT a.layer, a.level FROM access_layers a
                JOIN pg_class c ON c.oid = to_regclass(quote_ident(a.layer))
                WHERE c.relkind IN ('r', 'p')
            LOOP
                -- (SELECT twin_clearance()): an InitPlan, read once per query, not per row
                condition := format('(SELECT twin_clearance()) >= %s', l.level);
                FOR r IN SELECT attribute, "values", level FROM access_rows
                         WHERE layer = l.layer ORDER BY id LOOP
                    condition := condition || format(
                        ' AND ((SELECT twin_clearance()) >= %s'
                        ' OR NOT coalesce(%I::text = ANY (%L::text[]), false))',
                        r.level, r.attribute, r."values");
                END LOOP;
                EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', l.layer);
                EXECUTE format('DROP POLICY IF EXISTS twin_clearance ON %I', l.layer);
                EXECUTE format(
                    'CREATE POLICY twin_clearance ON %I FOR SELECT TO twin_reader USING (%s)',
                    l.layer, condition);
            END LOOP;
        END
        $$;

        CREATE FUNCTION twin_access_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            UPDATE layer_versions SET version = version + 1, changed_at = clock_timestamp()
            WHERE layer = 'access';
            IF TG_TABLE_NAME IN ('access_layers', 'access_rows') THEN
                PERFORM twin_apply_row_security();
            END IF;
            RETURN NULL;
        END
        $$;
        """
    )
    op.execute(
        """
        DO $$
        BEGIN
            CREATE ROLE twin_reader NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;  -- made by another database of this cluster
        END
        $$;
        """
    )
    op.execute(
        """
        DO $$
        BEGIN
            IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
                EXECUTE format('GRANT twin_reader TO %I', current_user);
            END IF;
        END
        $$;
        GRANT USAGE ON SCHEMA public TO twin_reader;
        GRANT SELECT ON ALL TABLES IN SCHEMA public TO twin_reader;
        ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO twin_reader;
        """
    )
    for table in SECRET_TABLES:
        op.execute(
            f"DO $$ BEGIN IF to_regclass('{table}') IS NOT NULL THEN "
            f"REVOKE ALL ON {table} FROM twin_reader; END IF; END $$"
        )
    for role, clearance, description in ROLES:
        op.execute(
            "INSERT INTO access_roles VALUES "
            f"('{role}', {clearance}, '{description}')"  # constants above, no user text
        )
    for layer, level in LEVELS:
        op.execute(f"INSERT INTO access_layers VALUES ('{layer}', {level})")
    for layer, attribute, values, level in ROWS:
        op.execute(
            'INSERT INTO access_rows (layer, attribute, "values", level) '
            f"VALUES ('{layer}', '{attribute}', '{values}', {level})"
        )
    for layer, attribute, method, step, keep_start, keep_end, level in MASKS:
        numbers = ", ".join("NULL" if v is None else str(v) for v in (step, keep_start, keep_end))
        op.execute(
            "INSERT INTO access_masks (layer, attribute, method, step, keep_start, keep_end, "
            f"level) VALUES ('{layer}', '{attribute}', '{method}', {numbers}, {level})"
        )
    for role, layer, permission in PERMISSIONS:
        op.execute(f"INSERT INTO access_permissions VALUES ('{role}', '{layer}', '{permission}')")
    op.execute("SELECT twin_apply_row_security()")
    for table in ("access_roles", "access_layers", "access_rows", "access_masks"):
        op.execute(
            f"CREATE TRIGGER {table}_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE "
            f"ON {table} FOR EACH STATEMENT EXECUTE FUNCTION twin_access_changed()"
        )
    op.execute(
        "CREATE TRIGGER access_permissions_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE "
        "ON access_permissions FOR EACH STATEMENT EXECUTE FUNCTION twin_access_changed()"
    )


def downgrade() -> None:
    for layer in LAYERS:
        op.execute(f"DROP POLICY IF EXISTS twin_clearance ON {layer}")
        op.execute(f"ALTER TABLE {layer} DISABLE ROW LEVEL SECURITY")
    op.execute("REVOKE ALL ON ALL TABLES IN SCHEMA public FROM twin_reader")
    op.execute("ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE SELECT ON TABLES FROM twin_reader")
    op.execute("REVOKE USAGE ON SCHEMA public FROM twin_reader")
    op.execute(
        "DROP TABLE IF EXISTS access_signing_keys, access_tokens, access_api_keys, access_users, "
        "access_permissions, access_masks, access_rows, access_layers, access_roles"
    )
    op.execute("DROP FUNCTION IF EXISTS twin_access_changed()")
    op.execute("DROP FUNCTION IF EXISTS twin_apply_row_security()")
    op.execute("DROP FUNCTION IF EXISTS twin_clearance()")
    op.execute("DELETE FROM layer_versions WHERE layer = 'access'")
