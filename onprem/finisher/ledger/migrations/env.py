"""Alembic's environment: the migrations run on the connection ``ledger.migrate.upgrade`` hands over.

Never run standalone (no ``alembic.ini``): ``finisher ledger upgrade`` opens the database, takes the schema lock
in its transaction and passes the connection in ``config.attributes["connection"]``.
"""

from __future__ import annotations

from alembic import context

from onprem.finisher.ledger.models import Base

connection = context.config.attributes["connection"]
# SQLite alters a table by copying it: Alembic's batch mode does that for a later revision's ALTER
context.configure(connection=connection, target_metadata=Base.metadata,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
