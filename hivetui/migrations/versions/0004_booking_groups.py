"""Bookings: the GPUs booked together share ``booking_id`` (the smallest id among them).

Existing rows are grouped as hivetui grouped them before: the same user, host,
start, end and title (and both live, or both cancelled). A row inserted
without a booking is a booking of its own: the database fills in its id.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


# The same test as 0001's guard (migrations never import each other).
_OVERLAP = """
EXISTS (SELECT 1 FROM reservations r
        WHERE r.gpu_uuid = NEW.gpu_uuid AND r.cancelled_s IS NULL AND r.id != NEW.id
          AND r.start_s < NEW.end_s AND NEW.start_s < r.end_s)
"""


def _fill_from_the_old_heuristic() -> None:
    rows = sa.table(
        "reservations",
        sa.column("id", sa.Integer),
        sa.column("booking_id", sa.Integer),
        sa.column("user", sa.String),
        sa.column("host", sa.String),
        sa.column("start_s", sa.BigInteger),
        sa.column("end_s", sa.BigInteger),
        sa.column("title", sa.Text),
        sa.column("cancelled_s", sa.BigInteger),
    )
    other = rows.alias("other")
    first = (
        sa.select(sa.func.min(other.c.id))
        .where(
            other.c.user == rows.c.user,
            other.c.host == rows.c.host,
            other.c.start_s == rows.c.start_s,
            other.c.end_s == rows.c.end_s,
            other.c.title == rows.c.title,
            other.c.cancelled_s.is_(None) == rows.c.cancelled_s.is_(None),
        )
        .scalar_subquery()
    )
    op.execute(rows.update().values(booking_id=first))


def upgrade() -> None:
    op.add_column("reservations", sa.Column("booking_id", sa.Integer, nullable=True))
    _fill_from_the_old_heuristic()
    op.create_index("ix_reservations_booking", "reservations", ["booking_id"])
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        # Only a change of GPU, times or state can make an overlap: the guard
        # need not run again when the booking id is filled in or regrouped.
        op.execute("DROP TRIGGER reservations_no_overlap_update")
        op.execute(
            "CREATE TRIGGER reservations_no_overlap_update BEFORE UPDATE OF "
            "gpu_uuid, start_s, end_s, cancelled_s ON reservations "
            f"WHEN NEW.cancelled_s IS NULL AND {_OVERLAP} "
            "BEGIN SELECT RAISE(ABORT, 'reservation overlaps another'); END"
        )
        # SQLite cannot see the new id before the insert: fill it in just after.
        op.execute(
            "CREATE TRIGGER reservations_own_booking AFTER INSERT ON reservations "
            "WHEN NEW.booking_id IS NULL BEGIN "
            "UPDATE reservations SET booking_id = NEW.id WHERE id = NEW.id; END"
        )
    elif dialect == "postgresql":
        op.execute(
            "CREATE FUNCTION reservations_own_booking() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN NEW.booking_id := COALESCE(NEW.booking_id, NEW.id); RETURN NEW; END $$"
        )
        op.execute(
            "CREATE TRIGGER reservations_own_booking BEFORE INSERT ON reservations "
            "FOR EACH ROW EXECUTE FUNCTION reservations_own_booking()"
        )
        op.alter_column("reservations", "booking_id", nullable=False)
