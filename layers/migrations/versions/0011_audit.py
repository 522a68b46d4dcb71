"""Audit trail: an append-only, hash-chained log of reads above public and of every write.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30

``audit_log`` holds one row per access: who (``actor``, ``role``), when (``at``), what
(``action``: read, create, replace, update, delete, sign-in, token, admin, ...), on which layer,
which feature ids (the first few hundred, :data:`layers.audit.MAX_IDS`) or bounding box, how many
features, from where (``client``), for what purpose (the caller's ``X-Purpose`` header), the
request (method, path and query) and the answer's status.

The log is append-only: triggers refuse UPDATE, DELETE and TRUNCATE. The hash chain is what
detects tampering by someone who can disable the triggers (the table's owner, a superuser):
every row carries ``prev_hash``, the previous row's ``hash``, and
``hash = sha256(prev_hash || convert_to(audit_canonical(row), 'UTF8'))``. The first row's
``prev_hash`` is 32 zero bytes. ``audit_canonical`` is the one definition of a row's canonical
text, used by the insert trigger and by :func:`layers.audit.verify`: a JSON array of every field
but the hashes, with the time in UTC to the microsecond and floats at a fixed precision setting,
so that neither the session's time zone nor its ``extra_float_digits`` changes it.

Several writers (API workers, the CLI) append at once, so the chain is computed in the database,
in a BEFORE INSERT row trigger that serialises on a transaction-level advisory lock
(:data:`CHAIN_LOCK`) and goes on from the chain's head: ``audit_chain``, one row holding the
last id and hash, moved by an AFTER INSERT statement trigger (once per statement, so a batch of
a thousand rows updates it once), or from the last row the same statement inserted. The row
trigger gives each row its id, the previous one's plus one, so ids are gapless and in chain
order even when transactions commit in another order than they started, and a missing id is
itself evidence. Because the chain goes on from the head and not from the table's last row,
deleting the last rows is detected even after new rows were written; and a writer whose
snapshot is stale (a REPEATABLE READ transaction) fails on the primary key instead of forking
the chain.
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

#: Key of the advisory lock every audit insert takes (``'audit'`` as an integer).
CHAIN_LOCK = 0x6175646974

# (":" escaped: op.execute reads the text as SQLAlchemy text(), where ":name" is a parameter)
_UPGRADE = f"""
CREATE TABLE audit_log (
    id bigint PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    actor text NOT NULL DEFAULT 'anonymous',
    role text,
    action text NOT NULL CHECK (action <> ''),
    layer text,
    ids text[],
    bbox float8[] CHECK (bbox IS NULL OR cardinality(bbox) = 4),
    feature_count int,
    client text,
    purpose text,
    request text NOT NULL DEFAULT '',
    status int,
    prev_hash bytea NOT NULL,
    hash bytea NOT NULL
);
CREATE INDEX audit_log_at ON audit_log USING brin (at);
COMMENT ON TABLE audit_log IS
    'Append-only, hash-chained audit trail (migration 0011; twin audit verify checks it).';

CREATE TABLE audit_chain (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    last_id bigint NOT NULL,
    last_hash bytea NOT NULL
);
INSERT INTO audit_chain VALUES (true, 0, decode(repeat('00', 32), 'hex'));

-- The canonical text of a row: what its hash covers (everything but the hashes).
CREATE FUNCTION audit_canonical(r audit_log) RETURNS text
LANGUAGE sql IMMUTABLE
SET extra_float_digits = 1
SET "TimeZone" = 'UTC'
AS $$
    SELECT jsonb_build_array(
        r.id,
        to_char(r.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24\\:MI\\:SS.US"Z"'),
        r.actor, r.role, r.action, r.layer, r.ids, r.bbox, r.feature_count,
        r.client, r.purpose, r.request, r.status
    )::text
$$;

CREATE FUNCTION audit_chain_row() RETURNS trigger
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = public, pg_catalog
AS $$
DECLARE
    prev_id bigint;
    prev_hash bytea;
    newer_id bigint;
    newer_hash bytea;
BEGIN
    PERFORM pg_advisory_xact_lock({CHAIN_LOCK});
    -- the chain goes on from its head (moved at the end of every statement, audit_chain_head),
    -- or from the last row this statement inserted
    SELECT c.last_id, c.last_hash INTO prev_id, prev_hash FROM audit_chain c;
    SELECT a.id, a.hash INTO newer_id, newer_hash FROM audit_log a
        WHERE a.id > prev_id ORDER BY a.id DESC LIMIT 1;
    IF FOUND THEN
        prev_id := newer_id;
        prev_hash := newer_hash;
    END IF;
    NEW.id := prev_id + 1;
    NEW.prev_hash := prev_hash;
    NEW.hash := sha256(NEW.prev_hash || convert_to(audit_canonical(NEW), 'UTF8'));
    RETURN NEW;
END
$$;

CREATE FUNCTION audit_chain_head() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = public, pg_catalog
AS $$
BEGIN
    UPDATE audit_chain c SET last_id = i.id, last_hash = i.hash
        FROM (SELECT id, hash FROM inserted ORDER BY id DESC LIMIT 1) i;
    RETURN NULL;
END
$$;

CREATE FUNCTION audit_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- the insert triggers move the chain's head (depth > 1); nothing else may
    IF TG_TABLE_NAME = 'audit_chain' AND TG_OP = 'UPDATE' AND pg_trigger_depth() > 1 THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'the audit log is append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER audit_log_chain BEFORE INSERT ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_chain_row();
CREATE TRIGGER audit_log_head AFTER INSERT ON audit_log
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION audit_chain_head();
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_refuse();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse();
CREATE TRIGGER audit_chain_guard BEFORE UPDATE OR DELETE ON audit_chain
    FOR EACH ROW EXECUTE FUNCTION audit_refuse();
CREATE TRIGGER audit_chain_no_truncate BEFORE TRUNCATE ON audit_chain
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse();
"""


def upgrade() -> None:
    op.execute(_UPGRADE)


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE audit_chain;
        DROP TRIGGER audit_log_chain ON audit_log;
        DROP TRIGGER audit_log_head ON audit_log;
        DROP FUNCTION audit_chain_row();
        DROP FUNCTION audit_chain_head();
        DROP FUNCTION audit_canonical(audit_log);
        DROP TABLE audit_log;
        DROP FUNCTION audit_refuse();
        """
    )
