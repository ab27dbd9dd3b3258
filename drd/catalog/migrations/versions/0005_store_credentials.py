"""Least privilege (issue 14): every system's own keys in every store.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04

- ``stores.credentials``: the broker that makes per-system keys in the store
  (``seaweedfs``, ``aws-iam``, ``shared``; NULL until determined), ``stores.iam_endpoint``;
- ``store_credentials``: each system's keys per store, their state and retries.

Existing file stores are marked ``shared`` (a directory cannot tell agents apart); S3
stores stay NULL until ``drd store check`` or the daemon's probe determines their broker.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DATETIME = sa.DateTime(timezone=True)
BROKERS = "credentials IS NULL OR credentials IN ('seaweedfs', 'aws-iam', 'shared')"
LIVE = "state IN ('pending', 'active')"
STATES = "state IN ('pending', 'active', 'superseded', 'disabling', 'disabled')"


def upgrade() -> None:
    with op.batch_alter_table("stores") as batch:
        batch.add_column(sa.Column("credentials", sa.String(), nullable=True))
        batch.add_column(sa.Column("iam_endpoint", sa.String(), nullable=True))
        batch.create_check_constraint("credentials", BROKERS)
    op.execute("UPDATE stores SET credentials = 'shared' WHERE kind = 'file'")
    op.create_table(
        "store_credentials",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("system_id", sa.Integer(), nullable=False),
        sa.Column("store_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("principal", sa.String(), nullable=True),
        sa.Column("access_key_id", sa.String(), nullable=True),
        sa.Column("secret_encrypted", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", DATETIME, nullable=False),
        sa.Column("issued_at", DATETIME, nullable=True),
        sa.Column("confirmed_at", DATETIME, nullable=True),
        sa.Column("superseded_at", DATETIME, nullable=True),
        sa.Column("disabled_at", DATETIME, nullable=True),
        sa.Column("reason", sa.String(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", DATETIME, nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.CheckConstraint(STATES, name=op.f("ck_store_credentials_state")),
        sa.ForeignKeyConstraint(["system_id"], ["systems.id"],
                                name=op.f("fk_store_credentials_system_id_systems")),
        sa.ForeignKeyConstraint(["store_id"], ["stores.id"],
                                name=op.f("fk_store_credentials_store_id_stores")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_store_credentials")),
    )
    op.create_index(op.f("ix_store_credentials_system_id_store_id"), "store_credentials",
                    ["system_id", "store_id"], unique=False)
    op.create_index(op.f("ix_store_credentials_state_next_attempt_at"), "store_credentials",
                    ["state", "next_attempt_at"], unique=False)
    op.create_index("ux_store_credentials_live", "store_credentials", ["system_id", "store_id"],
                    unique=True, sqlite_where=sa.text(LIVE), postgresql_where=sa.text(LIVE))


def downgrade() -> None:
    op.drop_index("ux_store_credentials_live", table_name="store_credentials")
    op.drop_index(op.f("ix_store_credentials_state_next_attempt_at"),
                  table_name="store_credentials")
    op.drop_index(op.f("ix_store_credentials_system_id_store_id"),
                  table_name="store_credentials")
    op.drop_table("store_credentials")
    with op.batch_alter_table("stores") as batch:
        batch.drop_constraint("credentials", type_="check")
        batch.drop_column("iam_endpoint")
        batch.drop_column("credentials")
