"""Accounts and access rules (issue 5): principals, API tokens, teams, robot scopes, namespaces,
per-bundle visibility, grants, the audit log and the rules version (``ecr_oci.server.db.accounts``).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIME = sa.DateTime(timezone=True)
_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "principal",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("password_hash", sa.Text(), nullable=True),
        sa.Column("public_key", sa.Text(), nullable=True),
        sa.Column("is_admin", sa.Boolean(), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("expires_at", _TIME, nullable=True),
        sa.Column("description", sa.String(512), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
    )
    op.create_table(
        "api_token",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "principal_id", sa.Integer(), sa.ForeignKey("principal.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("secret_sha256", sa.String(64), nullable=False),
        sa.Column("expires_at", _TIME, nullable=True),
        sa.Column("created_at", _TIME, nullable=False),
    )
    op.create_index("ix_api_token_principal_id", "api_token", ["principal_id"])
    op.create_table(
        "team",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("created_at", _TIME, nullable=False),
    )
    op.create_table(
        "team_member",
        sa.Column("team_id", sa.Integer(), sa.ForeignKey("team.id", ondelete="CASCADE"), primary_key=True),
        sa.Column(
            "principal_id", sa.Integer(), sa.ForeignKey("principal.id", ondelete="CASCADE"), primary_key=True
        ),
    )
    op.create_index("ix_team_member_principal_id", "team_member", ["principal_id"])
    op.create_table(
        "robot_scope",
        sa.Column(
            "principal_id", sa.Integer(), sa.ForeignKey("principal.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("namespace", sa.String(255), primary_key=True),
    )
    op.create_table(
        "namespace",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False, unique=True),
        sa.Column(
            "owner_id", sa.Integer(), sa.ForeignKey("principal.id", ondelete="SET NULL"), nullable=True
        ),
        sa.Column("visibility", sa.String(16), nullable=False),
        sa.Column("description", sa.String(512), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
    )
    op.create_table(
        "bundle_visibility",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "namespace_id", sa.Integer(), sa.ForeignKey("namespace.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("repository", sa.String(255), nullable=False, unique=True),
        sa.Column("visibility", sa.String(16), nullable=False),
    )
    op.create_index("ix_bundle_visibility_namespace_id", "bundle_visibility", ["namespace_id"])
    op.create_table(
        "access_grant",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "namespace_id", sa.Integer(), sa.ForeignKey("namespace.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("repository", sa.String(255), nullable=False),
        sa.Column(
            "principal_id", sa.Integer(), sa.ForeignKey("principal.id", ondelete="CASCADE"), nullable=True
        ),
        sa.Column("team_id", sa.Integer(), sa.ForeignKey("team.id", ondelete="CASCADE"), nullable=True),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.UniqueConstraint(
            "namespace_id", "repository", "principal_id", "team_id", name="uq_grant_target_subject"
        ),
    )
    op.create_index("ix_access_grant_namespace_id", "access_grant", ["namespace_id"])
    op.create_table(
        "audit_record",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("time", _TIME, nullable=False),
        sa.Column("actor", sa.String(128), nullable=True),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("target", sa.String(512), nullable=True),
        sa.Column("source_addr", sa.String(255), nullable=True),
        sa.Column("detail", _JSON, nullable=False),
    )
    op.create_index("ix_audit_time", "audit_record", ["time", "id"])
    op.create_index("ix_audit_action_time", "audit_record", ["action", "time"])
    op.create_table(
        "rules_version",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("version", sa.Integer(), nullable=False),
    )
    op.execute("INSERT INTO rules_version (id, version) VALUES (1, 0)")


def downgrade() -> None:
    for table in (
        "rules_version",
        "audit_record",
        "access_grant",
        "bundle_visibility",
        "namespace",
        "robot_scope",
        "team_member",
        "team",
        "api_token",
        "principal",
    ):
        op.drop_table(table)
