"""Pre-plans (预案) and drills (演练): scenario templates per incident kind, and exercises of them.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-01

``preplans`` keeps every version of every pre-plan, as ``signal_plans`` does (migration 0007):
saving a name again closes its current version (``valid_to``) and inserts the new one, so a drill
can always be reviewed against the very version it ran. ``plan`` is the template
(:mod:`twin.scenarios.preplans`): units to send, the cordon, the network whose nearest line is
isolated, who to notify, the checklist with target times (s after the alarm).

``drills`` records one exercise of a pre-plan version: the scenario it ran on (a scenario a drill
ran on cannot be deleted, ``ON DELETE RESTRICT``: the review reads it; archive it instead), who
started it, and when it started and ended by the store's clock (``clock_timestamp()``; a drill
replayed from a log starts at the moment it was held). ``drill_actions`` is its log: who did
what (the free-text ``actor``), who logged it (``logged_by``, the signed-in caller), for which
checklist step, when, and the seconds from the drill's start (``elapsed_s``, stored so a review
needs no clock).
"""

from __future__ import annotations

from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        r"""
        CREATE TABLE preplans (
            vid bigserial PRIMARY KEY,
            name text NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
            kind text NOT NULL CHECK (kind ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
            title_en text NOT NULL DEFAULT '',
            title_zh text NOT NULL DEFAULT '',
            plan jsonb NOT NULL,
            author text NOT NULL DEFAULT '',
            builtin boolean NOT NULL DEFAULT false,
            valid_from timestamptz NOT NULL DEFAULT clock_timestamp(),
            valid_to timestamptz CHECK (valid_to IS NULL OR valid_to >= valid_from)
        );
        CREATE UNIQUE INDEX preplans_current ON preplans (name) WHERE valid_to IS NULL;
        CREATE INDEX preplans_kind ON preplans (kind) WHERE valid_to IS NULL;

        CREATE TABLE drills (
            id serial PRIMARY KEY,
            preplan_vid bigint NOT NULL REFERENCES preplans (vid),
            scenario_id integer NOT NULL REFERENCES scenarios (id) ON DELETE RESTRICT,
            scenario_name text NOT NULL,
            title text NOT NULL DEFAULT '',
            lead text NOT NULL DEFAULT '',
            started_by text NOT NULL DEFAULT '',
            started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
            ended_at timestamptz CHECK (ended_at IS NULL OR ended_at >= started_at)
        );
        CREATE TABLE drill_actions (
            aid bigserial PRIMARY KEY,
            drill_id integer NOT NULL REFERENCES drills (id) ON DELETE CASCADE,
            step text,
            actor text NOT NULL CHECK (length(btrim(actor)) > 0),
            logged_by text NOT NULL DEFAULT '',
            what text NOT NULL DEFAULT '',
            at timestamptz NOT NULL,
            elapsed_s double precision NOT NULL CHECK (elapsed_s >= 0),
            recorded_at timestamptz NOT NULL DEFAULT clock_timestamp()
        );
        CREATE INDEX drill_actions_drill ON drill_actions (drill_id, elapsed_s);
        CREATE INDEX drills_scenario ON drills (scenario_id);
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS drill_actions")
    op.execute("DROP TABLE IF EXISTS drills")
    op.execute("DROP TABLE IF EXISTS preplans")
