"""The agencies that may use the HTTP API, with their hashed keys.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

from hajj_ledger.api.agencies import agencies

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    agencies.create(op.get_bind())


def downgrade() -> None:
    agencies.drop(op.get_bind())
