"""Alembic's environment: always online, on the connection :mod:`tidings.inbox.migrate` passes
in ``config.attributes["connection"]`` (a synchronous facade of the async engine's connection)."""

from __future__ import annotations

from alembic import context

from tidings.inbox.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run the inbox migrations with `tidings inbox migrate`")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
