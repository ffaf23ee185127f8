"""Alembic's environment and revisions of the inbox schema (run by :mod:`tidings.inbox.migrate`)."""
