"""Power grid kinds for networks imported from grid models: buses, and transformers as branches.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25

A grid model (pandapower, CIM) joins its lines at buses and draws a two-winding transformer as
a branch between two buses; ``power_nodes.kind`` gains ``bus`` and ``power_lines.kind``
``transformer`` so such a grid imports as it is.
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_KINDS = {
    "power_lines": (
        ("line", "cable", "minor_line", "feeder", "service"),
        ("transformer",),
    ),
    "power_nodes": (
        ("substation", "transformer", "switch", "consumer"),
        ("bus",),
    ),
}


def _check(table: str, kinds: tuple[str, ...]) -> None:
    listed = ", ".join(f"'{k}'" for k in kinds)
    op.execute(f"ALTER TABLE {table} DROP CONSTRAINT {table}_kind_check")
    op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {table}_kind_check CHECK (kind IN ({listed}))")


def upgrade() -> None:
    for table, (kinds, added) in _KINDS.items():
        _check(table, kinds + added)


def downgrade() -> None:
    for table, (kinds, _) in _KINDS.items():
        _check(table, kinds)
