"""The inbox: every notification a user may see, kept, with per-user state.

``schema`` (tables), ``visibility`` (the gateway's rule as a query), ``store`` (the database),
``migrate`` (Alembic, shipped in ``migrations/``), ``writer`` (JetStream → store, exactly once),
``metrics`` and ``app`` (the process: probes, /metrics, its supervised parts). Nothing in the
core imports this package.
"""
