"""Store fixtures: every store test runs on SQLite and on PostgreSQL, each test in a fresh database.

The PostgreSQL tests run whenever a server answers at HAJJ_LEDGER_TEST_POSTGRES_URL (default: the local one).
Under CI=true they always run: an unreachable server fails them rather than skipping them.

No test depends on the shell it runs in: the ledger's HAJJ_LEDGER_* variables are the suite's own (`ENVIRONMENT`)
whatever the shell has set, for every test and every process a test starts; a test that needs another sets it.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit
from uuid import uuid4

import psycopg
import pytest

from hajj_ledger.audit.signing import KEY_FILE_VARIABLE, SigningKeys
from hajj_ledger.ledger import JourneyLedger
from hajj_ledger.logs import AS_WRITTEN, QUIET
from hajj_ledger.settings import PREFIX, variable_for
from tests.support import open_season

# What every test runs with (beside its own files, `own_files`): the vault's master key, and the key analysts'
# exports make pseudonyms with.
ENVIRONMENT = {variable_for("master_keys"): "test-1:" + "A" * 43, variable_for("export_key"): "E" * 43 + "="}
SUITES_OWN = "HAJJ_LEDGER_TEST_"  # the suite's own variables (the servers it uses, below): never cleared

POSTGRES_URL = os.environ.get("HAJJ_LEDGER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _postgres_answers() -> bool:
    try:
        psycopg.connect(POSTGRES_URL, connect_timeout=3).close()
    except psycopg.OperationalError:
        return False
    return True


POSTGRES_AVAILABLE = IN_CI or _postgres_answers()
STORES = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param(
        "postgres",
        id="postgres",
        marks=[
            pytest.mark.postgres,
            pytest.mark.skipif(
                not POSTGRES_AVAILABLE,
                reason=f"no PostgreSQL at {POSTGRES_URL} (set CI=true to require it)",
            ),
        ],
    ),
]


NATS_URL = os.environ.get("HAJJ_LEDGER_TEST_NATS_URL", "nats://127.0.0.1:4222")


def _nats_answers() -> bool:
    host, _, port = NATS_URL.removeprefix("nats://").rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
    except OSError:
        return False
    return True


# The relay's tests run whenever a NATS server answers at HAJJ_LEDGER_TEST_NATS_URL; under CI=true always.
needs_nats = pytest.mark.skipif(
    not (IN_CI or _nats_answers()), reason=f"no NATS server at {NATS_URL} (set CI=true to require it)"
)


@pytest.fixture(scope="session", autouse=True)
def own_files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The suite's environment alone, for this test process (each xdist worker its own), with its own files: the
    checkpoints' signing key (tests that rotate keys make their own), and where exports asked for over HTTP go."""
    directory = tmp_path_factory.mktemp("own")
    shell = _ledger_variables()
    _set_ledger_variables(
        {
            **ENVIRONMENT,
            KEY_FILE_VARIABLE: str(SigningKeys.create(directory / "signing.json").path),
            variable_for("export_dir"): str(directory / "exports"),
        }
    )
    yield
    _set_ledger_variables(shell)


@pytest.fixture(autouse=True)
def _logging_as_found() -> Iterator[None]:
    """A command run in process sets up logging (`hajj_ledger.logs`), which stops the HTTP face's loggers passing
    their records on: put them back after each test, so a later test's `caplog` sees every record."""
    loggers = [logging.getLogger(name) for name in (*AS_WRITTEN, *QUIET)]
    saved = [(logger, logger.handlers[:], logger.level, logger.propagate) for logger in loggers]
    yield
    for logger, handlers, level, propagate in saved:
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


@pytest.fixture(autouse=True)
def environment() -> Iterator[None]:
    """Each test's HAJJ_LEDGER_* variables are the suite's and its fixtures' as it starts, and are again after it,
    however it changed them (the command line, run in this process, points the store elsewhere)."""
    before = _ledger_variables()
    yield
    _set_ledger_variables(before)


def _ledger_variables() -> dict[str, str]:
    return {
        name: value
        for name, value in os.environ.items()
        if name.upper().startswith(PREFIX) and not name.upper().startswith(SUITES_OWN)
    }


def _set_ledger_variables(wanted: Mapping[str, str]) -> None:
    for name in _ledger_variables():
        del os.environ[name]
    os.environ.update(wanted)


@contextmanager
def new_postgres_database() -> Iterator[str]:
    """A URL to a new, empty PostgreSQL database, dropped afterwards."""
    name = f"hajj_ledger_test_{uuid4().hex[:16]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(POSTGRES_URL)
    yield urlunsplit(parts._replace(path=f"/{name}"))
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url() -> Iterator[str]:
    with new_postgres_database() as url:
        yield url


@pytest.fixture(params=STORES)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/ledger.sqlite3"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def ledger(store_url: str) -> Iterator[JourneyLedger]:
    """A ledger on a new store, season 1446 opened by the ministry (a registration needs its season open)."""
    app = JourneyLedger(store_url)
    open_season(app)
    yield app
    app.close()


@pytest.fixture
def two_ledgers(store_url: str) -> Iterator[tuple[JourneyLedger, JourneyLedger]]:
    """Two ledgers on one store, as two API nodes (processes) would be; season 1446 opened."""
    first, second = JourneyLedger(store_url), JourneyLedger(store_url)
    open_season(first)
    yield first, second
    first.close()
    second.close()


def pytest_runtest_setup(item: pytest.Item) -> None:
    """The tests marked `serial` restart the shared PostgreSQL: never beside other tests, so never under xdist
    (`make test` runs them after the others, with `-m serial`)."""
    if item.get_closest_marker("serial") and hasattr(item.config, "workerinput"):
        pytest.fail("restarts the shared PostgreSQL: run it apart (-m serial), not beside other tests (-n)")
