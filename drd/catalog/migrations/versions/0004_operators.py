"""What operators' views and alerts (issue 6) record: store health and notifications.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27

- ``stores.checked_at``, ``reachable``, ``check_error``: the daemon's latest probe of each
  store (``drd_store_up``, the "store down" alert);
- ``alerts.notified_at``: when the channels were last told of an open alert (repeats);
- ``alert_notifications``: the outbox of messages to alert channels (webhook, email),
  delivered and retried apart from the jobs that raised them.

Columns are added with plain ``ALTER TABLE ... ADD COLUMN`` (no batch rebuild; see 0002).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DATETIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("stores", sa.Column("checked_at", DATETIME, nullable=True))
    op.add_column("stores", sa.Column("reachable", sa.Boolean(), nullable=True))
    op.add_column("stores", sa.Column("check_error", sa.Text(), nullable=True))
    op.add_column("alerts", sa.Column("notified_at", DATETIME, nullable=True))
    op.create_table(
        "alert_notifications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("alert_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(), nullable=False),
        sa.Column("event", sa.String(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("created_at", DATETIME, nullable=False),
        sa.Column("next_attempt_at", DATETIME, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("sent_at", DATETIME, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.CheckConstraint("event IN ('opened', 'repeated', 'resolved')",
                           name=op.f("ck_alert_notifications_event")),
        sa.CheckConstraint("state IN ('pending', 'sent', 'failed')",
                           name=op.f("ck_alert_notifications_state")),
        sa.ForeignKeyConstraint(["alert_id"], ["alerts.id"],
                                name=op.f("fk_alert_notifications_alert_id_alerts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_notifications")),
    )
    op.create_index(op.f("ix_alert_notifications_alert_id"), "alert_notifications",
                    ["alert_id"], unique=False)
    op.create_index(op.f("ix_alert_notifications_state_next_attempt_at"),
                    "alert_notifications", ["state", "next_attempt_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_alert_notifications_state_next_attempt_at"),
                  table_name="alert_notifications")
    op.drop_index(op.f("ix_alert_notifications_alert_id"), table_name="alert_notifications")
    op.drop_table("alert_notifications")
    op.drop_column("alerts", "notified_at")
    op.drop_column("stores", "check_error")
    op.drop_column("stores", "reachable")
    op.drop_column("stores", "checked_at")
