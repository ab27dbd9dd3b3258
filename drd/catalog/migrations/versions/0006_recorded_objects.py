"""Nothing decided by majority (issue 14 point 7): the digests of objects not named by hash.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05

- ``recorded_objects``: per system and key (``config``, ``drd/escrow/password.sealed``,
  ``drd/manifests/<id>.json`` and ``.json.sig``), the SHA-256 and size every copy in
  the stores must have, and where that digest came from.

Nothing is filled in here: the centre records the sealed password's and the manifests'
digests from its own bytes the first time replication or verification looks at a system
(:func:`drd.recorded.backfill_records`), and ``config``'s from a locked copy (or an
alert says it cannot be checked).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DATETIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "recorded_objects",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("system_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("recorded_at", DATETIME, nullable=False),
        sa.ForeignKeyConstraint(["system_id"], ["systems.id"],
                                name=op.f("fk_recorded_objects_system_id_systems")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recorded_objects")),
        sa.UniqueConstraint("system_id", "key", name=op.f("uq_recorded_objects_system_id_key")),
    )


def downgrade() -> None:
    op.drop_table("recorded_objects")
