"""The journeys' registrations indexed in the log (a partial index of the events table: one entry a journey), so
that `journey_status` as of any position is read a page at a time without replaying the log.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from hajj_ledger.audit.reads import registrations_index
from hajj_ledger.projections.status import POSTGRES_EVENTS, SQLITE_EVENTS

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _events() -> tuple[str, str]:
    return SQLITE_EVENTS if op.get_bind().dialect.name == "sqlite" else POSTGRES_EVENTS


def upgrade() -> None:
    events, position = _events()
    if sa.inspect(op.get_bind()).has_table(events):  # else the ledger has not made its tables yet: read without
        op.execute(registrations_index(events, position))


def downgrade() -> None:
    events, _ = _events()
    op.execute(f"DROP INDEX IF EXISTS {events}_registrations")
