"""The audit trail's index: generation `a` of the `trail_index` projection at position 0, so that the projection
runner fills it from the whole log (the backfill of an existing store) and then follows it.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

from hajj_ledger.projections import projection
from hajj_ledger.projections.runner import install, uninstall

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    install(op.get_bind(), [projection("trail_index")])


def downgrade() -> None:
    uninstall(op.get_bind(), [projection("trail_index")])
