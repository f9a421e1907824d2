"""`hajj-ledger migrate`: the read models' tables created or upgraded, after the event store's own.

Registered through the `hajj_ledger.commands` entry point, like the read side's commands: the migrations build on the
read side (each installs its projections' tables), so running them is theirs to offer.
"""

from __future__ import annotations

import argparse
from typing import Any

from hajj_ledger.preflight import WRITE


def register(commands: Any) -> None:
    migrating = commands.add_parser("migrate", help="create or upgrade the read models' tables (Alembic)")
    migrating.set_defaults(run=migrate, store=WRITE)


def migrate(args: argparse.Namespace) -> int:
    from hajj_ledger.ledger import JourneyLedger
    from hajj_ledger.migrations import upgrade
    from hajj_ledger.projections.schema import create_schema, engine_for
    from hajj_ledger.store.recorders import direct_database_url

    url = direct_database_url()  # creating tables takes a session lock: never through a transaction pooler
    create_schema(url)
    JourneyLedger(url).close()  # the event store's own tables first: eventsourcing creates them
    engine = engine_for(url)
    upgrade(engine)
    engine.dispose()
    print("The read models are at the latest migration.")
    return 0
