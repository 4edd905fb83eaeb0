"""Reservations and events; the database refuses overlapping bookings of one GPU.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_OVERLAP = """
EXISTS (SELECT 1 FROM reservations r
        WHERE r.gpu_uuid = NEW.gpu_uuid AND r.cancelled_s IS NULL AND r.id != NEW.id
          AND r.start_s < NEW.end_s AND NEW.start_s < r.end_s)
"""


def upgrade() -> None:
    op.create_table(
        "reservations",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("user", sa.String(64), nullable=False),
        sa.Column("host", sa.String(128), nullable=False),
        sa.Column("gpu_index", sa.Integer, nullable=False),
        sa.Column("gpu_uuid", sa.String(96), nullable=False),
        sa.Column("start_s", sa.BigInteger, nullable=False),
        sa.Column("end_s", sa.BigInteger, nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("created_s", sa.BigInteger, nullable=False),
        sa.Column("cancelled_s", sa.BigInteger, nullable=True),
        sa.Column("cancelled_by", sa.String(64), nullable=True),
        sa.CheckConstraint("end_s > start_s", name="ck_reservations_order"),
    )
    op.create_index("ix_reservations_gpu_time", "reservations", ["gpu_uuid", "start_s", "end_s"])
    op.create_index("ix_reservations_end", "reservations", ["end_s"])
    op.create_table(
        "events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at_s", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("user", sa.String(64), nullable=True),
        sa.Column("host", sa.String(128), nullable=True),
        sa.Column("gpu_uuid", sa.String(96), nullable=True),
        sa.Column("reservation_id", sa.Integer, nullable=True),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_index("ix_events_at", "events", ["at_s"])
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for when in ("INSERT", "UPDATE"):
            op.execute(
                f"CREATE TRIGGER reservations_no_overlap_{when.lower()} BEFORE {when} "
                f"ON reservations WHEN NEW.cancelled_s IS NULL AND {_OVERLAP} "
                "BEGIN SELECT RAISE(ABORT, 'reservation overlaps another'); END"
            )
    elif dialect == "postgresql":
        op.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
        op.execute(
            "ALTER TABLE reservations ADD CONSTRAINT reservations_no_overlap "
            "EXCLUDE USING gist (gpu_uuid WITH =, int8range(start_s, end_s) WITH &&) "
            "WHERE (cancelled_s IS NULL)"
        )
