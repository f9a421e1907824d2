"""The seasons and their calendars: generation `a` of `seasons` at position 0, so that the projection runner fills
it from the whole log and then follows it.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

from hajj_ledger.projections import projection
from hajj_ledger.projections.runner import install, uninstall

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    install(op.get_bind(), [projection("seasons")])


def downgrade() -> None:
    uninstall(op.get_bind(), [projection("seasons")])
