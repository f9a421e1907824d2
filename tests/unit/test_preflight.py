"""One line per failure, batch jobs that wait, and the command line as the shell can run it."""

from __future__ import annotations

import sys

import pytest
from psycopg_pool import PoolTimeout

from hajj_ledger import preflight
from hajj_ledger.store import connections
from hajj_ledger.store.connections import Postgres, for_batch_jobs, patiently


@pytest.mark.parametrize(
    ("message", "says"),
    [
        (
            'connection failed: could not translate host name "db.example" to address: Name or service not known',
            "cannot resolve host 'db.example'",
        ),
        (
            'connection failed: connection to server at "127.0.0.1", port 1 failed: Connection refused\n'
            "\tIs the server running on that host and accepting TCP/IP connections?",
            "PostgreSQL at db.example:1 refused the connection",
        ),
        ('connection failed: FATAL:  database "ledgr" does not exist', "no such database 'ledgr'"),
        ("FATAL:  password authentication failed for user", "refused the credentials"),
    ],
)
def test_a_failed_connection_is_named(message: str, says: str) -> None:
    line = preflight.unreachable(message, "db.example:1", "ledgr")
    assert says in line and "\n" not in line


def test_batch_jobs_wait_longer_for_a_connection_unless_the_url_says() -> None:
    assert Postgres.from_url(for_batch_jobs("postgresql://u@h/db")).connect_timeout == connections.BATCH_CONNECT_TIMEOUT
    assert Postgres.from_url(for_batch_jobs("postgresql://u@h/db?connect_timeout=3")).connect_timeout == 3
    assert for_batch_jobs("sqlite:///var/x.sqlite3") == "sqlite:///var/x.sqlite3"


def test_a_batch_step_is_tried_again_while_the_database_is_away() -> None:
    pauses: list[float] = []
    tries = iter([PoolTimeout("couldn't get a connection after 1.00 sec")] * 3)

    def step() -> str:
        for error in tries:
            raise error
        return "recorded"

    assert patiently(step, "simulate", sleep=pauses.append) == "recorded"
    assert len(pauses) == 3 and pauses[0] < pauses[1] < pauses[2]  # backing off


def test_a_batch_step_gives_up_after_its_patience_and_at_once_on_other_errors() -> None:
    pauses: list[float] = []

    def away() -> None:
        raise PoolTimeout("couldn't get a connection")

    with pytest.raises(PoolTimeout):
        patiently(away, "simulate", patience=10, sleep=pauses.append)
    assert sum(pauses[:-1]) < 10 <= sum(pauses)  # it paused until its patience was spent, then gave up
    calls = []

    def broken() -> None:
        calls.append(1)
        raise KeyError("a bug, not an outage")

    with pytest.raises(KeyError):
        patiently(broken, "simulate")
    assert calls == [1]


def test_the_cli_is_named_as_the_shell_can_run_it(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    monkeypatch.setattr(sys, "argv", [".venv/bin/hajj-ledger", "demo"])
    monkeypatch.setenv("PATH", "/nowhere")
    assert preflight.invocation() == ".venv/bin/hajj-ledger"
    monkeypatch.setattr(sys, "argv", ["/usr/lib/python3/something.py"])
    assert preflight.invocation().endswith("-m hajj_ledger.cli")


def test_an_unexpected_error_is_one_line_with_the_way_to_see_more() -> None:
    line, code = preflight.describe(KeyError("boom"))
    assert code == 70 and "HAJJ_LEDGER_DEBUG=1" in line and "\n" not in line
