"""Manifests sealed to the escrow key in the stores (issue 14 point 7).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05

- ``snapshot_manifests.sealed_head``: the first 45 bytes (version, ephemeral X25519 key,
  nonce) of the manifest the agent stored sealed (``drd/manifests/<id>.json.sealed``).
  With the kept plaintext and the escrow key they give that object back byte for byte,
  so verification can write a damaged copy back from the catalog without the catalog
  keeping the ciphertext as well. Null for manifests kept before: their agents stored
  the plaintext (``<id>.json``), which is still verified as before.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("snapshot_manifests",
                  sa.Column("sealed_head", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    # SQLite drops an unconstrained, unindexed column in place (3.35+)
    op.drop_column("snapshot_manifests", "sealed_head")
