"""Signal plans: named, versioned timing plans the optimiser computed for an area or corridor.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25

A plan is stored as JSON (per signal: program, cycle, greens, offset, predicted delay, phases),
with the request that made it. Saving a name again closes its current version
(``valid_to``) and adds a new one, so earlier plans stay readable.
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE signal_plans (
            vid bigserial PRIMARY KEY,
            name text NOT NULL CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$'),
            valid_from timestamptz NOT NULL DEFAULT clock_timestamp(),
            valid_to timestamptz CHECK (valid_to IS NULL OR valid_to >= valid_from),
            request jsonb NOT NULL,
            plan jsonb NOT NULL
        );
        CREATE UNIQUE INDEX signal_plans_current ON signal_plans (name) WHERE valid_to IS NULL;
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE signal_plans")
