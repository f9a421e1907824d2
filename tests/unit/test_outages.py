"""What the API answers as the database away (503, retry): the errors the drivers raise for a connection lost,
refused or not had in time, as they raise them or as the event store's library and SQLAlchemy raise them in turn;
told by their kind, never by their name."""

from __future__ import annotations

import sqlite3

import eventsourcing.persistence
import psycopg
import pytest
import sqlalchemy.exc
from psycopg_pool import PoolTimeout

from hajj_ledger.api.sources import database_away


def _raised(error: BaseException, *, wrapped_in: type[Exception] | None = None) -> BaseException:
    """`error` as it comes out of the code that raised it: alone, or as the cause of another."""
    try:
        try:
            raise error
        except BaseException as cause:
            if wrapped_in is None:
                raise
            raise wrapped_in(str(cause)) from cause
    except BaseException as found:
        return found
    raise AssertionError("unreachable")


class OperationalError(Exception):
    """An error of the same name as the drivers', of no driver: a bug, not an outage."""


@pytest.mark.parametrize(
    "error",
    [
        _raised(psycopg.OperationalError("connection to server lost")),
        _raised(PoolTimeout("couldn't get a connection after 4.00 sec")),
        _raised(psycopg.errors.AdminShutdown("terminating connection due to administrator command")),
        _raised(psycopg.InterfaceError("the connection is closed")),
        _raised(psycopg.OperationalError("lost"), wrapped_in=eventsourcing.persistence.OperationalError),
        _raised(eventsourcing.persistence.ConnectionUnavailableError("no connection in time")),
        _raised(sqlite3.OperationalError("database is locked"), wrapped_in=RuntimeError),
        _raised(sqlalchemy.exc.OperationalError("SELECT 1", {}, sqlite3.OperationalError("unable to open database"))),
    ],
    ids=repr,
)
def test_a_connection_lost_or_not_had_is_the_database_away_however_it_is_wrapped(error: BaseException) -> None:
    assert database_away(error)


@pytest.mark.parametrize(
    "error",
    [
        _raised(psycopg.errors.UniqueViolation("duplicate key value")),
        _raised(OperationalError("named as the drivers' are")),
        _raised(ValueError("a bug"), wrapped_in=RuntimeError),
    ],
    ids=repr,
)
def test_any_other_error_is_not_the_database_away(error: BaseException) -> None:
    assert not database_away(error)
