"""Every read of one season: the views of journeys that had no `season` column gain one (`port_arrivals`,
`awaiting_transport`, `site_headcount`, `missing_persons`, `overstay_watch`), so that a next season's registrations,
bookings and arrivals count apart from the current season's.

They are installed afresh at position 0, with the new columns; the projection runner (`hajj-ledger project`, or
`serve`) rebuilds them from the log, as it does any view whose code changed. Until it has caught up they are partial
(`hajj-ledger status` shows their lag).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

from hajj_ledger.projections.runner import reinstall

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

NAMES = ("port_arrivals", "awaiting_transport", "site_headcount", "missing_persons", "overstay_watch")


def upgrade() -> None:
    reinstall(op.get_bind(), NAMES)


def downgrade() -> None:
    reinstall(op.get_bind(), NAMES)  # the code in place defines the tables, installed afresh as on upgrade
