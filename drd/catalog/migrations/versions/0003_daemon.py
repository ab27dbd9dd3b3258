"""What the central daemon (issue 4) records: the object ledger, replicas, the work queue.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27

- ``store_objects``: the ledger, one row per object of a system's repository per store,
  with when it was last verified (keyless verification's coverage);
- ``replicas``: per system and store, replication's watermark and lag;
- ``tombstones``: objects prune removed, to be removed from the other stores later;
- ``work_items``: the queue every daemon claims work from; ``daemons``: who runs;
- ``alerts``: what operators must see;
- ``jobs.active`` and ``stores.verify_budget_bytes``.

Columns are added with plain ``ALTER TABLE ... ADD COLUMN`` (no batch rebuild; see 0002).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "daemons",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("hostname", sa.String(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("leader", sa.Boolean(), nullable=False),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_daemons")),
    )
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("severity", sa.String(), nullable=False),
        sa.Column("system_id", sa.Integer(), nullable=True),
        sa.Column("store_id", sa.Integer(), nullable=True),
        sa.Column("open_key", sa.String(length=300), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("details", sa.JSON(none_as_null=True), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["store_id"], ["stores.id"], name=op.f("fk_alerts_store_id_stores")
        ),
        sa.ForeignKeyConstraint(
            ["system_id"], ["systems.id"], name=op.f("fk_alerts_system_id_systems")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
        sa.UniqueConstraint("open_key", name=op.f("uq_alerts_open_key")),
    )
    op.create_index(op.f("ix_alerts_kind"), "alerts", ["kind"], unique=False)
    op.create_index(op.f("ix_alerts_system_id"), "alerts", ["system_id"], unique=False)

    op.create_table(
        "replicas",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("system_id", sa.Integer(), nullable=False),
        sa.Column("store_id", sa.Integer(), nullable=False),
        sa.Column("watermark_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("listed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lag_objects", sa.BigInteger(), nullable=True),
        sa.Column("lag_bytes", sa.BigInteger(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["store_id"], ["stores.id"], name=op.f("fk_replicas_store_id_stores")
        ),
        sa.ForeignKeyConstraint(
            ["system_id"], ["systems.id"], name=op.f("fk_replicas_system_id_systems")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_replicas")),
        sa.UniqueConstraint("system_id", "store_id", name=op.f("uq_replicas_system_id_store_id")),
    )
    op.create_index(op.f("ix_replicas_store_id"), "replicas", ["store_id"], unique=False)

    op.create_table(
        "store_objects",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("store_id", sa.Integer(), nullable=False),
        sa.Column("system_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("verified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "state IN ('present', 'corrupt', 'missing', 'lost')",
            name=op.f("ck_store_objects_state"),
        ),
        sa.ForeignKeyConstraint(
            ["store_id"], ["stores.id"], name=op.f("fk_store_objects_store_id_stores")
        ),
        sa.ForeignKeyConstraint(
            ["system_id"], ["systems.id"], name=op.f("fk_store_objects_system_id_systems")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_store_objects")),
        sa.UniqueConstraint(
            "store_id", "system_id", "key", name=op.f("uq_store_objects_store_id_system_id_key")
        ),
    )
    op.create_index(
        op.f("ix_store_objects_store_id_state_verified_at"),
        "store_objects",
        ["store_id", "state", "verified_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_store_objects_system_id_key"), "store_objects", ["system_id", "key"], unique=False
    )

    op.create_table(
        "tombstones",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("system_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("pruned_store_id", sa.Integer(), nullable=False),
        sa.Column("removed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delete_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_from", sa.JSON(none_as_null=True), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["pruned_store_id"], ["stores.id"], name=op.f("fk_tombstones_pruned_store_id_stores")
        ),
        sa.ForeignKeyConstraint(
            ["system_id"], ["systems.id"], name=op.f("fk_tombstones_system_id_systems")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tombstones")),
        sa.UniqueConstraint("system_id", "key", name=op.f("uq_tombstones_system_id_key")),
    )
    op.create_index(
        op.f("ix_tombstones_delete_after"), "tombstones", ["delete_after"], unique=False
    )

    op.create_table(
        "work_items",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("system_id", sa.Integer(), nullable=True),
        sa.Column("store_id", sa.Integer(), nullable=True),
        sa.Column("params", sa.JSON(none_as_null=True), nullable=False),
        sa.Column("pending_key", sa.String(length=200), nullable=True),
        sa.Column("scheduled_for", sa.DateTime(timezone=True), nullable=True),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_by", sa.String(length=64), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("checkpoint", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "state IN ('queued', 'running', 'done', 'failed')", name=op.f("ck_work_items_state")
        ),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_work_items_job_id_jobs")),
        sa.ForeignKeyConstraint(
            ["run_id"], ["job_runs.id"], name=op.f("fk_work_items_run_id_job_runs")
        ),
        sa.ForeignKeyConstraint(
            ["store_id"], ["stores.id"], name=op.f("fk_work_items_store_id_stores")
        ),
        sa.ForeignKeyConstraint(
            ["system_id"], ["systems.id"], name=op.f("fk_work_items_system_id_systems")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_work_items")),
        sa.UniqueConstraint(
            "job_id", "scheduled_for", name=op.f("uq_work_items_job_id_scheduled_for")
        ),
        sa.UniqueConstraint("pending_key", name=op.f("uq_work_items_pending_key")),
    )
    op.create_index(op.f("ix_work_items_job_id"), "work_items", ["job_id"], unique=False)
    op.create_index(
        op.f("ix_work_items_state_not_before"), "work_items", ["state", "not_before"], unique=False
    )

    op.add_column(
        "jobs", sa.Column("active", sa.Boolean(), nullable=False, server_default=sa.true())
    )
    op.add_column("stores", sa.Column("verify_budget_bytes", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    op.drop_column("stores", "verify_budget_bytes")
    op.drop_column("jobs", "active")

    op.drop_index(op.f("ix_work_items_state_not_before"), table_name="work_items")
    op.drop_index(op.f("ix_work_items_job_id"), table_name="work_items")

    op.drop_table("work_items")
    op.drop_index(op.f("ix_tombstones_delete_after"), table_name="tombstones")

    op.drop_table("tombstones")
    op.drop_index(op.f("ix_store_objects_system_id_key"), table_name="store_objects")
    op.drop_index(op.f("ix_store_objects_store_id_state_verified_at"), table_name="store_objects")

    op.drop_table("store_objects")
    op.drop_index(op.f("ix_replicas_store_id"), table_name="replicas")

    op.drop_table("replicas")
    op.drop_index(op.f("ix_alerts_system_id"), table_name="alerts")
    op.drop_index(op.f("ix_alerts_kind"), table_name="alerts")

    op.drop_table("alerts")
    op.drop_table("daemons")
