"""The durable notification queue (issue 4, indexing throughput): ``pending_event``.

Revision ID: 0004
Revises: 0003

``POST /events`` stores each manifest push/delete here and answers at once; the indexing worker
drains the table in batches (``services.queue``) and deletes each row in the transaction that
applies it, so events accepted before a crash are indexed at the next start.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "pending_event",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(length=128), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("pending_event")
