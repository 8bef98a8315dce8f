"""Search indexes (issue 4, search latency): index-only filters for platform and signed_by.

Revision ID: 0002
Revises: 0001

- ``ix_platform_version_os_arch`` (``version_id``, ``os``, ``architecture``, ``variant``): the
  platform filter's EXISTS per version is answered from the index;
- ``ix_signature_key_subject`` (``key_fingerprint``, ``repository_id``, ``subject_digest``)
  replaces ``ix_signature_key`` (its prefix): a key's subjects without reading the table;
- ``ix_version_image_created`` (``repository_id``, ``image_digest``, ``created``, ``id``): the
  signed_by join from a signature to its version carries the sort key.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("platform", schema=None) as batch_op:
        batch_op.create_index(
            "ix_platform_version_os_arch", ["version_id", "os", "architecture", "variant"], unique=False
        )
    with op.batch_alter_table("signature", schema=None) as batch_op:
        batch_op.create_index(
            "ix_signature_key_subject", ["key_fingerprint", "repository_id", "subject_digest"], unique=False
        )
        batch_op.drop_index("ix_signature_key")
    with op.batch_alter_table("version", schema=None) as batch_op:
        batch_op.create_index(
            "ix_version_image_created", ["repository_id", "image_digest", "created", "id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("version", schema=None) as batch_op:
        batch_op.drop_index("ix_version_image_created")
    with op.batch_alter_table("signature", schema=None) as batch_op:
        batch_op.create_index("ix_signature_key", ["key_fingerprint"], unique=False)
        batch_op.drop_index("ix_signature_key_subject")
    with op.batch_alter_table("platform", schema=None) as batch_op:
        batch_op.drop_index("ix_platform_version_os_arch")
