"""The market, housing and the road: generation `a` of `service_offers`, `contracts`, `building_occupancy` and
`trips_on_road` at position 0, so that the projection runner fills them from the whole log and then follows it.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

from __future__ import annotations

from alembic import op

from hajj_ledger.projections import projection
from hajj_ledger.projections.runner import install, uninstall

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

NAMES = ("service_offers", "contracts", "building_occupancy", "trips_on_road")


def upgrade() -> None:
    install(op.get_bind(), [projection(name) for name in NAMES])


def downgrade() -> None:
    uninstall(op.get_bind(), [projection(name) for name in NAMES])
