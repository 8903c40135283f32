"""The ledger's Alembic migrations: ``env.py`` (run by ``finisher ledger upgrade``), one module per revision."""
