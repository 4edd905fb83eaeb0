"""An index on reservation starts: the grid's window query reads only its days.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_reservations_start", "reservations", ["start_s", "end_s"])
