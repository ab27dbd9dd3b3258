"""What the agent protocol (issue 3) records: token use, heartbeats, reports, manifests.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02

- ``tokens.used_at``: when a one-time enrollment token was consumed;
- ``systems.backup_requested_at``, ``last_seen_at``, ``last_heartbeat``: ``drd backup-now``
  and the agents' heartbeats;
- ``snapshots.report_id`` (unique), ``duration_seconds``, ``partial``, ``manifest_sha256``;
- ``snapshot_copies.missing_objects`` and ``missing``: what a store lacked at report time;
- ``snapshot_manifests``: each snapshot's signed manifest, as the canonical bytes signed.

Only columns are added (``ALTER TABLE ... ADD COLUMN``) and the unique report id is a
unique index, never a table constraint: SQLite would otherwise rebuild ``snapshots``, and
dropping the old table with foreign keys on would cascade-delete every snapshot copy.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON(none_as_null=True)
DATETIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("tokens", sa.Column("used_at", DATETIME, nullable=True))

    op.add_column("systems", sa.Column("backup_requested_at", DATETIME, nullable=True))
    op.add_column("systems", sa.Column("last_seen_at", DATETIME, nullable=True))
    op.add_column("systems", sa.Column("last_heartbeat", JSON, nullable=True))

    op.add_column("snapshots", sa.Column("report_id", sa.String(length=36), nullable=True))
    op.add_column("snapshots", sa.Column("duration_seconds", sa.Double(), nullable=True))
    op.add_column("snapshots", sa.Column("partial", sa.Boolean(), nullable=False,
                                         server_default=sa.false()))
    op.add_column("snapshots", sa.Column("manifest_sha256", sa.String(length=64),
                                         nullable=True))
    op.create_index(op.f("ix_snapshots_report_id"), "snapshots", ["report_id"], unique=True)

    op.add_column("snapshot_copies", sa.Column("missing_objects", sa.BigInteger(),
                                               nullable=True))
    op.add_column("snapshot_copies", sa.Column("missing", JSON, nullable=True))

    op.create_table(
        "snapshot_manifests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("snapshot_id", sa.Integer(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("signature", sa.LargeBinary(), nullable=False),
        sa.Column("received_at", DATETIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["snapshot_id"], ["snapshots.id"],
            name=op.f("fk_snapshot_manifests_snapshot_id_snapshots"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_snapshot_manifests")),
        sa.UniqueConstraint("snapshot_id", name=op.f("uq_snapshot_manifests_snapshot_id")),
    )


def downgrade() -> None:
    # SQLite drops a column in place (3.35+) unless it is indexed or constrained: the
    # index goes first, and no column here carries a constraint
    op.drop_table("snapshot_manifests")
    op.drop_index(op.f("ix_snapshots_report_id"), table_name="snapshots")
    for table, columns in (
        ("snapshot_copies", ("missing", "missing_objects")),
        ("snapshots", ("manifest_sha256", "partial", "duration_seconds", "report_id")),
        ("systems", ("last_heartbeat", "last_seen_at", "backup_requested_at")),
        ("tokens", ("used_at",)),
    ):
        for column in columns:
            op.drop_column(table, column)
