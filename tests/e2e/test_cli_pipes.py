"""The command line as a shell runs it: a reader that goes away early, and what starting it imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hajj_ledger.audit.chain import Chain, signing_keys
from hajj_ledger.cli import main
from hajj_ledger.domain.parsing import parse_command_json
from hajj_ledger.domain.vocabulary import Actor, Role
from hajj_ledger.ledger import JourneyLedger
from tests.support import EXECUTABLE, open_season, registration_command, season_opened

HEAVY = ("sqlalchemy", "alembic", "fastapi", "pyarrow", "uvicorn", "hajj_ledger.projections.runner")


@pytest.fixture
def sealed_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path}/ledger.sqlite3"
    monkeypatch.setenv("HAJJ_LEDGER_DATABASE_URL", url)
    assert main(["migrate"]) == 0
    ledger = JourneyLedger(url)
    open_season(ledger)
    ledger.record(parse_command_json(json.dumps(registration_command())), Actor("mission-EGY-00001", Role.MISSION))
    Chain(ledger, signing_keys(url, required=True)).seal_all()
    ledger.close()
    return url


@pytest.mark.parametrize("command", [["rules"], ["status"], ["proof", "1"]], ids=lambda c: c[0])
def test_a_reader_that_goes_away_ends_it_quietly(command: list[str], sealed_store: str) -> None:
    env = {**os.environ, "HAJJ_LEDGER_DATABASE_URL": sealed_store}
    process = subprocess.Popen(
        [str(EXECUTABLE), *command], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )  # `| head -0`: the reader is gone before the first line
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()
    with process.stderr:
        errors = process.stderr.read().decode()
    assert process.wait(timeout=60) in (0, 141)
    assert errors == ""


# What each command must not import: the read side's and the HTTP face's libraries for all; `--help` and `status`
# not the domain either (status reads positions with a plain query); on SQLite, nothing of PostgreSQL's. Every
# command reads its settings through pydantic-settings (a bad HAJJ_LEDGER_* variable refused before anything runs),
# and pydantic looks for plugins with importlib.metadata when it builds that model.
DOMAIN = ("hajj_ledger.ledger", "hajj_ledger.domain.journey", "eventsourcing")
NOT_IMPORTED = {
    "--help": (*HEAVY, *DOMAIN, "psycopg"),
    "status": (*HEAVY, *DOMAIN, "psycopg"),
    "history": (*HEAVY, "psycopg"),
    "record": (*HEAVY, "psycopg"),
}
POSTGRES_NEEDS = ("psycopg", "importlib.metadata")  # psycopg's binary reads its version with importlib.metadata


@pytest.mark.parametrize("command", list(NOT_IMPORTED))
def test_starting_imports_only_what_the_command_needs(command: str, store_url: str) -> None:
    """Each of the commands that must start fast (< 0.5 s: `make bench`) imports only what it needs."""
    env = {**os.environ, "HAJJ_LEDGER_DATABASE_URL": store_url}
    subprocess.run([str(EXECUTABLE), "migrate"], env=env, capture_output=True, check=True)
    season_opened(store_url)
    registration = registration_command()
    record = ["record", json.dumps(registration), "--role", "mission", "--agency", "mission-EGY-00001"]
    if command == "history":
        subprocess.run([str(EXECUTABLE), *record], env=env, capture_output=True, check=True)
    argv = {
        "--help": ["--help"],
        "status": ["status"],
        "history": ["history", registration["pilgrim_id"], "--season", "1446"],
        "record": record,
    }[command]
    unwanted = [m for m in NOT_IMPORTED[command] if store_url.startswith("sqlite") or m not in POSTGRES_NEEDS]
    probe = (
        "import contextlib, io, sys; from hajj_ledger.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
        "    try:\n"
        f"        code = main({argv!r})\n"
        "    except SystemExit as exit:\n"
        "        code = exit.code\n"
        f"print(code, [m for m in {unwanted!r} if m in sys.modules])"
    )
    found = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env)
    assert found.stdout.strip() == "0 []"  # done, and without them
