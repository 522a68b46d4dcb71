"""Accent-insensitive comparison: the ``unaccent`` extension, for CQL2's ``ACCENTI``.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26

OGC CQL2's accent-insensitive comparison strips accents from both sides; PostgreSQL's
``unaccent`` (a contrib extension, shipped with the server) does it with its Unicode rules.
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS unaccent")


def downgrade() -> None:
    op.execute("DROP EXTENSION IF EXISTS unaccent")
