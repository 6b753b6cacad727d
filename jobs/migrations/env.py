"""Alembic environment: runs on the connection `jobs.store.migrate` hands over."""

from __future__ import annotations

from alembic import context

from jobs._tables import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `vdr db upgrade` or jobs.store.migrate()")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
