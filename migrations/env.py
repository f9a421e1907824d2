"""Alembic's environment: migrations run on the connection `hajj-ledger migrate` hands over."""

from __future__ import annotations

from alembic import context

from hajj_ledger.projections.schema import engine_for

connection = context.config.attributes.get("connection")
if connection is None:  # run by the alembic command line: the configured store
    with engine_for().begin() as connection:
        context.configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
else:
    context.configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()
