"""The agencies that may use the HTTP API, with their hashed keys.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# The table as this revision made it (a migration keeps its own copy: the HTTP face may change its model later).
agencies = sa.Table(
    "agencies",
    sa.MetaData(),
    sa.Column("agency_id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("key_id", sa.String(16), nullable=False, unique=True),
    sa.Column("key_hash", sa.LargeBinary(32), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("revoked_at", sa.DateTime(timezone=True)),
)


def upgrade() -> None:
    agencies.create(op.get_bind())


def downgrade() -> None:
    agencies.drop(op.get_bind())
