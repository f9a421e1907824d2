"""The ledger's settings: every `HAJJ_LEDGER_*` variable, typed, described and checked in one place.

`settings()` reads them once, and again only once one of them has changed (the command line points the store at a
closed season's archive; a test sets its own), so that nothing set in the environment is ever read stale. A value
the ledger cannot use is refused where a command starts, in one line naming the variable and the reason
(`SettingsError`). docs/configuration.md's table is rendered from the fields (`hajj-ledger settings --markdown`).
Light on imports: everything reads it, the command line first.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, ValidationError
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, SettingsConfigDict

PREFIX = "HAJJ_LEDGER_"
DEFAULT_DATABASE_URL = "sqlite:///var/hajj-ledger.sqlite3"


class Settings(BaseSettings):
    """What `HAJJ_LEDGER_<FIELD>` gives each field; an empty variable is an unset one."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, env_ignore_empty=True, frozen=True, allow_inf_nan=False)

    database_url: str = Field(
        DEFAULT_DATABASE_URL,
        description="the store: `sqlite:///PATH` (embedded; nothing to install) or libpq's URL, "
        "`postgresql://USER[:PASSWORD]@HOST[:PORT][,HOST[:PORT]...]/DB[?PARAMETERS]` (production; several hosts: "
        "whichever takes writes, see [failover](operations.md#failover-a-standby-promoted-no-node-restarted))",
    )
    direct_database_url: str | None = Field(
        None,
        description="PostgreSQL itself (never PgBouncer), for the leader lock, LISTEN and `migrate`; libpq's URL, as "
        "above; unset: the database URL",
    )
    read_database_url: str | None = Field(
        None, description="streaming standbys for reads, comma-separated libpq URLs (each may name several hosts)"
    )
    write_pool_size: int = Field(2, ge=1, description="connections each event-store pool keeps open")
    write_pool_overflow: int = Field(8, ge=0, description="connections an event-store pool may add under load")
    read_pool_size: int = Field(8, ge=1, description="each API worker's read pool (steady)")
    master_keys: SecretStr | None = Field(
        None,
        description="the identity vault's master keys, `KEY_ID:base64 of 32 bytes`, comma-separated, the current "
        "one first (see [the identity vault](identity.md)); unset: read from the key file below",
    )
    master_key_file: Path | None = Field(
        None, description="a file holding the master keys; with neither, the demo store alone makes `var/master.keys`"
    )
    signing_key_file: Path | None = Field(
        None,
        description="the Ed25519 keys that sign the chain's checkpoints and exports' manifests; unset: the demo "
        "store alone makes `var/demo-signing-keys.json`",
    )
    export_key: SecretStr | None = Field(
        None,
        description="base64 of 32 bytes: the key exports' pseudonyms are made with; unset: the demo store alone "
        "makes `var/demo-export-key`",
    )
    export_dir: Path = Field(Path("var/exports"), description="where exports asked for over HTTP are written")
    season_cache: Path = Field(
        Path("var/seasons"), description="where closed seasons' archives are opened for reading, one file each"
    )
    retention_days: int = Field(
        365, ge=0, description="days after a journey ends that `retention apply` keeps its identity (`--after-days`)"
    )
    host: str = Field("127.0.0.1", description="where `hajj-ledger serve` listens (`--host`)")
    port: int = Field(8000, ge=1, le=65535, description="the port `hajj-ledger serve` listens on (`--port`)")
    workers: int = Field(1, ge=1, description="how many uvicorn workers `hajj-ledger serve` runs (`--workers`)")
    max_wait: float = Field(
        2.0, ge=0, description="seconds a read with `min_position` waits for the views before answering 503"
    )
    debug: bool = Field(False, description="`1`: a failing command prints its traceback, not just its one line")
    feed_buffer: int = Field(
        2000, ge=1, description="events a change-feed client may fall behind by before its stream is ended"
    )
    feed_heartbeat: float = Field(15.0, gt=0, description="seconds between a change-feed stream's heartbeats")
    key_recheck: float = Field(
        2.0,
        gt=0,
        description="seconds between a process's looks at the keys of its open answers (the feed's streams, the "
        "waits for `min_position`; one query for them all, none while none is open): each ends once its key is "
        "revoked",
    )
    nats_url: str = Field(
        "nats://127.0.0.1:4222",
        description="the NATS server `hajj-ledger publish` relays the log to (`nats://relay:PASSWORD@host:4222` "
        "with `hajj-ledger nats-users`' users)",
    )
    nats_stream: str = Field(
        "HAJJ_LEDGER", description="the relay's JetStream stream (its own); `nats-users` writes its users' for it"
    )
    nats_subject_root: str = Field("hajj", description="the first token of the relay's subjects")


class SettingsError(ValueError):
    """A `HAJJ_LEDGER_*` variable the ledger cannot use: its name and the reason, in one line."""


def variable_for(field: str) -> str:
    """The environment variable that sets `field`."""
    if field not in Settings.model_fields:
        raise KeyError(field)
    return PREFIX + field.upper()


def settings() -> Settings:
    """The settings the environment gives now: read and checked once for each state of the `HAJJ_LEDGER_*`
    variables. Raises SettingsError."""
    return _read(frozenset((name, value) for name, value in os.environ.items() if name.upper().startswith(PREFIX)))


@lru_cache(maxsize=4)
def _read(variables: frozenset[tuple[str, str]]) -> Settings:  # the variables: the cache's key
    try:
        return Settings()
    except ValidationError as error:
        raise SettingsError("; ".join(_problem(problem) for problem in error.errors())) from None


def _problem(problem: ErrorDetails) -> str:
    """`HAJJ_LEDGER_PORT: input should be a valid integer, ... (got 'x')` (a secret, a string, is never refused)."""
    reason = problem["msg"][:1].lower() + problem["msg"][1:]
    return f"{variable_for(str(problem['loc'][0]))}: {reason} (got {problem['input']!r})"


def render_markdown() -> str:
    """docs/configuration.md's table: each variable, its default and what it sets."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        rows.append(f"| `{variable_for(name)}` | {_shown(field.default)} | {field.description} |")
    return "\n".join(rows) + "\n"


def _shown(default: object) -> str:
    if default is None:
        return "(unset)"
    if isinstance(default, bool):
        return f"`{int(default)}`"
    if isinstance(default, float):
        return f"`{default:g}`"
    return f"`{default}`"
