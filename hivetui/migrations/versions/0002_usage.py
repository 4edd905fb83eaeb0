"""GPU use per reservation (idle detection) and the agent's heartbeat.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reservation_usage",
        sa.Column("reservation_id", sa.Integer, sa.ForeignKey("reservations.id"), primary_key=True),
        sa.Column("samples", sa.Integer, nullable=False),
        sa.Column("util_sum", sa.Float, nullable=False),
        sa.Column("mem_sum", sa.Float, nullable=False),
        sa.Column("last_s", sa.BigInteger, nullable=False),
        sa.Column("idle_since_s", sa.BigInteger, nullable=True),
    )
    op.create_table(
        "agent_heartbeats",
        sa.Column("agent", sa.String(128), primary_key=True),
        sa.Column("at_s", sa.BigInteger, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    )
