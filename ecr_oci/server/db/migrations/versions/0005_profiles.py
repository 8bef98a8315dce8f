"""Performance profiles (issue 6): ``profile_run``, ``profile_summary``, ``profile_metric``.

Revision ID: 0005
Revises: 0004

- ``profile_run``: one row per indexed profile referrer (cascade with its manifest);
- ``profile_summary``: the runs of one device on one platform manifest, aggregated (medians);
- ``profile_metric``: a summary's plugin metrics as columns (``max_metric``, ``sort=metric:…``);
- ``ix_platform_digest`` (``digest``, ``version_id``): from a profile's subject to its versions.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: a migration keeps its own copy of the type (the models may change later)
JsonType = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _figures() -> list[sa.Column[object]]:
    return [
        sa.Column("wall_s", sa.Float(), nullable=True),
        sa.Column("cpu_s", sa.Float(), nullable=True),
        sa.Column("peak_rss_bytes", sa.BigInteger(), nullable=True),
        sa.Column("gpu_util_percent_peak", sa.Float(), nullable=True),
        sa.Column("gpu_memory_peak_bytes", sa.BigInteger(), nullable=True),
        sa.Column("exit_status", sa.Integer(), nullable=True),
        sa.Column("metrics", JsonType, nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "profile_run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("manifest_id", sa.Integer(), nullable=False),
        sa.Column("repository_id", sa.Integer(), nullable=False),
        sa.Column("subject_digest", sa.String(length=150), nullable=False),
        sa.Column("manifest_digest", sa.String(length=150), nullable=False),
        sa.Column("device", sa.String(length=255), nullable=False),
        sa.Column("arch", sa.String(length=64), nullable=True),
        sa.Column("created", sa.String(length=40), nullable=True),
        *_figures(),
        sa.ForeignKeyConstraint(["manifest_id"], ["manifest.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["repository_id"], ["repository.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("manifest_id"),
    )
    op.create_index(
        "ix_profile_run_subject", "profile_run", ["repository_id", "subject_digest", "device"], unique=False
    )
    op.create_table(
        "profile_summary",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("repository_id", sa.Integer(), nullable=False),
        sa.Column("subject_digest", sa.String(length=150), nullable=False),
        sa.Column("device", sa.String(length=255), nullable=False),
        sa.Column("arch", sa.String(length=64), nullable=True),
        sa.Column("runs", sa.Integer(), nullable=False),
        sa.Column("latest_created", sa.String(length=40), nullable=True),
        *_figures(),
        sa.Column("latest", JsonType, nullable=False),
        sa.ForeignKeyConstraint(["repository_id"], ["repository.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "repository_id", "subject_digest", "device", name="uq_profile_summary_subject_device"
        ),
    )
    op.create_index(
        "ix_profile_summary_device",
        "profile_summary",
        ["device", "repository_id", "subject_digest"],
        unique=False,
    )
    op.create_table(
        "profile_metric",
        sa.Column("summary_id", sa.Integer(), nullable=False),
        sa.Column("metric", sa.String(length=128), nullable=False),
        sa.Column("p50", sa.Float(), nullable=True),
        sa.Column("p95", sa.Float(), nullable=True),
        sa.Column("p99", sa.Float(), nullable=True),
        sa.Column("count", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["summary_id"], ["profile_summary.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("summary_id", "metric"),
    )
    op.create_index("ix_profile_metric_name", "profile_metric", ["metric", "summary_id"], unique=False)
    op.create_index("ix_platform_digest", "platform", ["digest", "version_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_platform_digest", table_name="platform")
    op.drop_index("ix_profile_metric_name", table_name="profile_metric")
    op.drop_table("profile_metric")
    op.drop_index("ix_profile_summary_device", table_name="profile_summary")
    op.drop_table("profile_summary")
    op.drop_index("ix_profile_run_subject", table_name="profile_run")
    op.drop_table("profile_run")
