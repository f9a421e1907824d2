"""Alembic migrations of the read models (installed as hajj_ledger.migrations); `hajj-ledger migrate` runs them.

Alembic is imported when a migration runs, not with the package: the command line loads `migrate` from here at start.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

HERE = Path(__file__).parent


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the read models' schema to `revision`; the event store's own tables are the ledger's to create."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(HERE))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def current(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head() -> str | None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(HERE))
    return ScriptDirectory.from_config(config).get_current_head()
