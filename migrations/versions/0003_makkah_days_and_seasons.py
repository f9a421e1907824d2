"""Days in Makkah time, and seasons kept apart: `season_funnel` and `health_cases` gain a `season` column, and the
per-day views (`season_funnel`, `port_arrivals`) count by the day in Makkah (UTC+3) instead of the UTC date.

The three are installed afresh at position 0, with the new columns; the projection runner (`hajj-ledger project`,
or `serve`) rebuilds them from the log, as it does any view whose code changed. Until it has caught up they are
partial (`hajj-ledger status` shows their lag).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

from hajj_ledger.projections.runner import reinstall

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

NAMES = ("season_funnel", "port_arrivals", "health_cases")


def upgrade() -> None:
    reinstall(op.get_bind(), NAMES)


def downgrade() -> None:
    reinstall(op.get_bind(), NAMES)  # the code in place defines the tables, installed afresh as on upgrade
