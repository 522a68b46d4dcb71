"""Layer versions pushed: every change of a counter in ``layer_versions`` is NOTIFYed.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01

A row trigger on ``layer_versions`` (whatever moved the counter: the per-table triggers of
migration 0003, the live state's of 0010, the access rules' of 0012) sends
``pg_notify('twin_layer_versions', '<layer>:<version>')``. PostgreSQL delivers a notification
when the transaction commits, never for a rolled-back one, so a listener
(:mod:`layers.versions`) keeps the counters in memory and no tile request reads them.
"""

from __future__ import annotations

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

#: The channel listeners LISTEN on (:data:`layers.versions.CHANNEL`).
CHANNEL = "twin_layer_versions"


def upgrade() -> None:
    op.execute(
        f"""
        CREATE FUNCTION notify_layer_version() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('{CHANNEL}', NEW.layer || ':' || NEW.version);
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER layer_versions_notify AFTER INSERT OR UPDATE OF version "
        "ON layer_versions FOR EACH ROW EXECUTE FUNCTION notify_layer_version()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS layer_versions_notify ON layer_versions")
    op.execute("DROP FUNCTION IF EXISTS notify_layer_version()")
