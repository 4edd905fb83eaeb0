"""Alembic environment: hivetui runs migrations on a connection it opened itself."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `hivetui db upgrade`, not the alembic command")

context.configure(connection=connection, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
