"""Revision 0001: the ledger's tables as the finisher made them before schema revisions (``works``,
``restore_requests``).

A table that already exists is kept as it is: a ledger made before revisions (by ``create_all`` of the same
models) is adopted at 0001 with its rows, and only the version row is added.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    if "works" not in existing:
        op.create_table(
            "works",
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("idempotency_key", sa.String(80), nullable=False, unique=True),
            sa.Column("work_rid", sa.String(100), nullable=False),
            sa.Column("source", sa.String(16), nullable=False),
            sa.Column("collection", sa.String(40)),
            sa.Column("region", sa.String(40)),
            sa.Column("bucket", sa.String(255)),
            sa.Column("key", sa.String(1024)),
            sa.Column("version_id", sa.String(1024)),
            sa.Column("etag", sa.String(100)),
            sa.Column("size", sa.BigInteger),
            sa.Column("message_body", sa.Text),
            sa.Column("phase", sa.String(32), nullable=False),
            sa.Column("restore_expiry", sa.DateTime),
            sa.Column("restore_requested_at", sa.DateTime),
            sa.Column("restore_completed_at", sa.DateTime),
            sa.Column("downloaded_at", sa.DateTime),
            sa.Column("debagged_at", sa.DateTime),
            sa.Column("synced_at", sa.DateTime),
            sa.Column("created_at", sa.DateTime, nullable=False),
            sa.Column("updated_at", sa.DateTime, nullable=False),
            sa.Column("history", sa.JSON, nullable=False),
            sa.Column("last_error", sa.Text),
            sa.Column("last_cause", sa.String(64)),
            sa.Column("attempts", sa.Integer, nullable=False),
            sa.Column("hops", sa.Integer, nullable=False),
            sa.Column("lease_owner", sa.String(200)),
            sa.Column("lease_heartbeat_at", sa.DateTime),
            sa.Column("lease_expires_at", sa.DateTime),
        )
        op.create_index("ix_works_work_rid", "works", ["work_rid"])
        op.create_index("ix_works_phase", "works", ["phase"])
    if "restore_requests" not in existing:
        op.create_table(
            "restore_requests",
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("work_rid", sa.String(100), nullable=False),
            sa.Column("collection", sa.String(40)),
            sa.Column("region", sa.String(40)),
            sa.Column("bucket", sa.String(255), nullable=False),
            sa.Column("key", sa.String(1024), nullable=False),
            sa.Column("size", sa.BigInteger),
            sa.Column("tier", sa.String(16), nullable=False),
            sa.Column("days", sa.Integer, nullable=False),
            sa.Column("status", sa.String(32), nullable=False),
            sa.Column("times_requested", sa.Integer, nullable=False),
            sa.Column("requested_at", sa.DateTime, nullable=False),
            sa.Column("eta_at", sa.DateTime),
            sa.Column("estimated_cost_usd", sa.Float),
            sa.UniqueConstraint("bucket", "key"),
        )
        op.create_index("ix_restore_requests_work_rid", "restore_requests", ["work_rid"])


def downgrade() -> None:
    op.drop_table("restore_requests")
    op.drop_table("works")
