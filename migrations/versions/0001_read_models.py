"""The first read models: the positions table, and generation `a` of each projection with its views.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

from hajj_ledger.projections import projection
from hajj_ledger.projections.runner import install, uninstall
from hajj_ledger.projections.schema import positions

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

NAMES = (
    "journey_status",
    "port_arrivals",
    "awaiting_transport",
    "trip_manifest",
    "site_headcount",
    "health_cases",
    "missing_persons",
    "overstay_watch",
    "season_funnel",
)


def upgrade() -> None:
    connection = op.get_bind()
    positions.create(connection)
    install(connection, [projection(name) for name in NAMES])


def downgrade() -> None:
    connection = op.get_bind()
    uninstall(connection, [projection(name) for name in NAMES])
    positions.drop(connection)
