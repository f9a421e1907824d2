"""Before a command touches the store: is the store there, and are the keys it needs given?

Each failure is one line naming the cause and the fix. A read never creates a store: a mistyped SQLite path is an
error, not a new empty database. Also how the command line is named in printed hints. Light on imports: the
command line starts through here.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from hajj_ledger.settings import SettingsError, settings, variable_for
from hajj_ledger.store.connections import (
    AWAY,
    DATABASE_URL_VARIABLE,
    DEFAULT_DATABASE_URL,
    Postgres,
    causes,
    first_line,
    unsupported_store,
)

DEBUG_VARIABLE = variable_for("debug")
SIGNING_KEY_FILE_VARIABLE = variable_for("signing_key_file")

READ, WRITE = "read", "write"  # what a command does to the store
# A key a command needs: given the store's URL, raises SetupError when it is not configured. Each is defined beside
# the commands that need it and imports what it checks when it runs.
KeyCheck = Callable[[str], None]


class SetupError(ValueError):
    """The store or a key cannot be used as configured; the message says why and what to do."""


def invocation() -> str:
    """The command line as the user's shell can run it: its name when that is on the PATH, else its path (e.g.
    `.venv/bin/hajj-ledger`), so that printed hints run as printed."""
    import shutil

    script = Path(sys.argv[0]).resolve()
    if script.name != "hajj-ledger":
        return f"{sys.executable} -m hajj_ledger.cli"
    found = shutil.which("hajj-ledger")
    if found and Path(found).resolve() == script:
        return "hajj-ledger"
    relative = os.path.relpath(script)
    return relative if not relative.startswith("..") else str(script)


def configured_url() -> str:
    return settings().database_url


def check(access: str | None, keys: Sequence[KeyCheck] = (), url: str | None = None) -> None:
    """Raise SetupError when the store cannot be used for `access`, or a key in `keys` is missing."""
    url = url or configured_url()
    if access is not None:
        check_store(url, write=access == WRITE)
    for key in keys:
        key(url)


def master_key(url: str) -> None:
    """The identity vault's master key, for the commands that read or write identities."""
    from hajj_ledger.identity.vault import MasterKeys, VaultKeyError

    try:
        MasterKeys.configured(demo=url == DEFAULT_DATABASE_URL)
    except VaultKeyError as error:
        raise SetupError(f"{error.message}; `hajj-ledger master-key new FILE` makes one") from None


def check_store(url: str, *, write: bool) -> None:
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if not write and not path.is_file():
            raise SetupError(
                f"no such SQLite file: {path} ({DATABASE_URL_VARIABLE}); check the path, or record into it first"
            )
        return
    if url.startswith(("postgresql://", "postgres://")):
        import psycopg

        found = Postgres.from_url(url)
        try:
            psycopg.connect(found.conninfo, connect_timeout=10, **found.connect_kwargs()).close()
        except psycopg.OperationalError as error:
            raise SetupError(unreachable(str(error), found.name, found.dbname)) from None
        return
    raise SetupError(str(unsupported_store(url)))


def unreachable(message: str, hosts: str, dbname: str) -> str:
    """One line for a connection that failed (`hosts`: HOST:PORT, or several so): the cause first, then the fix."""
    where = f"PostgreSQL at {hosts}"
    if "translate host name" in message or "Name or service not known" in message:
        named = re.search(r'translate host name "([^"]*)"', message)
        host = named.group(1) if named else hosts.rsplit(":", 1)[0]
        return f"cannot resolve host {host!r} ({DATABASE_URL_VARIABLE}): check the host name"
    if "Connection refused" in message:
        return f"{where} refused the connection: is PostgreSQL running there? ({DATABASE_URL_VARIABLE})"
    if re.search(r'database "[^"]*" does not exist', message):
        return f"no such database {dbname!r} on {where}: create it (createdb {dbname}) or fix {DATABASE_URL_VARIABLE}"
    if "password authentication failed" in message or "no password supplied" in message:
        return f"{where} refused the credentials in {DATABASE_URL_VARIABLE}: check the user and password"
    if "timeout expired" in message:
        return f"{where} did not answer in time: check the host and port ({DATABASE_URL_VARIABLE})"
    if "read-write" in message or "is in hot standby" in message or "read-only" in message:
        return (
            f"no host of {where} takes writes (each is a standby, or read-only): promote one, or fix "
            f"{DATABASE_URL_VARIABLE} (target_session_attrs)"
        )
    last = [line.strip() for line in message.splitlines() if line.strip()]
    return f"cannot connect to {where}: {last[-1] if last else message}"


def describe(error: BaseException) -> tuple[str, int]:
    """One line for a command that failed, and its exit status: 2 when the store or a key cannot be used as
    configured, 1 for a file the command could not use, 70 for anything unexpected."""
    if isinstance(error, SettingsError):  # before the store's URL is asked for: it may be the variable refused
        return str(error), 2
    chain = list(causes(error))
    url = configured_url()
    if any(type(e).__name__ == "UndefinedTable" or "no such table" in str(e) for e in chain):
        return f"the store at {_safe(url)} holds no ledger yet: record into it, or check {DATABASE_URL_VARIABLE}", 2
    if any(type(e).__module__ == "sqlite3" for e in chain):
        return f"the SQLite store {url.removeprefix('sqlite:///')}: {first_line(error)}", 2
    if any(type(e).__name__ in AWAY for e in chain):
        if url.startswith(("postgresql://", "postgres://")):
            try:  # the pool's "couldn't get a connection" hides why: ask the database directly
                check_store(url, write=True)
            except SetupError as found:
                return str(found), 2
        return f"the database is busy or away: {first_line(error)}", 2
    if isinstance(error, ValueError):  # configuration: a URL, a key, a set-up step not done
        return str(error), 2
    if isinstance(error, OSError):
        return str(error), 1
    return f"unexpected {type(error).__name__}: {first_line(error)} ({DEBUG_VARIABLE}=1 shows where)", 70


def _safe(url: str) -> str:
    """A URL without its password, to print."""
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)
