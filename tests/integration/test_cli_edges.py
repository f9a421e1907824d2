"""The command line at its edges, in process: preflight, keys, wrong URLs, `verify`'s verdicts, repeats."""

from __future__ import annotations

import json
import os
import socket
import stat
from pathlib import Path
from urllib.parse import urlsplit
from uuid import uuid4

import pytest
from psycopg_pool import PoolTimeout

from hajj_ledger.audit.chain import Chain, signing_keys
from hajj_ledger.cli import main
from hajj_ledger.domain.parsing import parse_command_json
from hajj_ledger.domain.vocabulary import Actor, Role
from hajj_ledger.identity.vault import MasterKeys
from hajj_ledger.ledger import JourneyLedger
from tests.conftest import POSTGRES_AVAILABLE, POSTGRES_URL
from tests.support import open_season, registration_command

needs_postgres = pytest.mark.skipif(not POSTGRES_AVAILABLE, reason="no PostgreSQL")
MISSION = ("--role", "mission", "--agency", "mission-EGY-00001")


def registration() -> str:
    return json.dumps(registration_command())


def cli(monkeypatch: pytest.MonkeyPatch, url: str, *args: str) -> int:
    monkeypatch.setenv("HAJJ_LEDGER_DATABASE_URL", url)
    return main(list(args))


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


def test_simulate_without_a_master_key_fails_at_once_and_writes_nothing(
    store_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("HAJJ_LEDGER_MASTER_KEYS", raising=False)
    monkeypatch.delenv("HAJJ_LEDGER_MASTER_KEY_FILE", raising=False)
    assert cli(monkeypatch, store_url, "simulate", "--pilgrims", "10") == 2
    line = one_line(capsys.readouterr().err)
    assert "no master key" in line and "hajj-ledger master-key new FILE" in line
    if store_url.startswith("sqlite"):
        assert not Path(store_url.removeprefix("sqlite:///")).exists()
    else:
        ledger = JourneyLedger(store_url)
        assert ledger.head() == 0
        ledger.close()


def test_master_key_new_makes_a_key_then_a_new_current_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "keys" / "master.keys"
    assert main(["master-key", "new", str(path)]) == 0
    first = MasterKeys.parse(path.read_text())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert f"export HAJJ_LEDGER_MASTER_KEY_FILE={path}" in capsys.readouterr().out
    assert main(["master-key", "new", str(path)]) == 0
    both = MasterKeys.parse(path.read_text())
    assert both.current != first.current and first.current in both.keys
    assert "identity rotate-key" in capsys.readouterr().out
    (tmp_path / "other").write_text("not a key file")
    assert main(["master-key", "new", str(tmp_path / "other")]) == 1  # refused, not prepended to
    assert (tmp_path / "other").read_text() == "not a key file"


@pytest.mark.parametrize(
    "command",
    [
        ["history", str(uuid4())],
        ["trail", "--limit", "5"],
        ["as-of", str(uuid4()), "--position", "1"],
        ["status"],
        ["view", "journey_status", "--as-of", "1"],
        ["view", "trips_on_road"],
        ["verify"],
        ["proof", "1"],
        ["identity", "find", "--name", "x", *MISSION],
    ],
    ids=lambda c: c[0],
)
def test_a_read_on_a_mistyped_sqlite_path_is_an_error_not_a_new_store(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "typo" / "ledger.sqlite3"
    assert cli(monkeypatch, f"sqlite:///{missing}", *command) == 2
    assert f"no such SQLite file: {missing}" in one_line(capsys.readouterr().err)
    assert not missing.parent.exists()


@needs_postgres
@pytest.mark.parametrize(
    "command", [["history", str(uuid4())], ["status"], ["record", registration(), *MISSION]], ids=lambda c: c[0]
)
@pytest.mark.parametrize(
    ("where", "cause"),
    [
        ("no-such-host.invalid:5432/postgres", "cannot resolve host 'no-such-host.invalid'"),
        ("127.0.0.1:1/postgres", "PostgreSQL at 127.0.0.1:1 refused the connection"),
        ("HOST/no_such_database_here", "no such database 'no_such_database_here'"),
    ],
    ids=["bad-host", "refused", "no-database"],
)
def test_a_wrong_postgres_url_is_one_line_naming_the_cause(
    command: list[str], where: str, cause: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    parts = urlsplit(POSTGRES_URL)
    url = f"postgresql://{parts.username or 'postgres'}@{where.replace('HOST', parts.netloc.split('@')[-1])}"
    assert cli(monkeypatch, url, *command) == 2
    assert cause in one_line(capsys.readouterr().err)


def test_a_traceback_only_with_debug(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HAJJ_LEDGER_DEBUG", "1")
    monkeypatch.setenv("HAJJ_LEDGER_DATABASE_URL", "mysql://root@localhost/x")
    with pytest.raises(ValueError, match="unsupported store"):
        main(["record", registration(), *MISSION])


def test_an_error_midway_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    def away(self: JourneyLedger, *args: object) -> None:
        raise PoolTimeout("couldn't get a connection after 1.00 sec")

    url = f"sqlite:///{tmp_path}/ledger.sqlite3"
    JourneyLedger(url).close()
    monkeypatch.setattr(JourneyLedger, "journey", away)
    assert cli(monkeypatch, url, "history", str(uuid4())) == 2
    line = one_line(capsys.readouterr().err)
    assert line == "hajj-ledger: the database is busy or away: couldn't get a connection after 1.00 sec"


@pytest.fixture
def recorded(store_url: str) -> str:
    """A store holding one registration, not sealed."""
    ledger = JourneyLedger(store_url)
    open_season(ledger)
    ledger.record(parse_command_json(registration()), Actor("mission-EGY-00001", Role.MISSION))
    ledger.close()
    return store_url


def test_verify_never_says_ok_about_nothing(
    recorded: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(monkeypatch, recorded, "verify") == 3  # nothing sealed: nothing checked
    out = capsys.readouterr().out
    assert "NOT VERIFIED" in out and "OK" not in out
    assert cli(monkeypatch, recorded, "verify", "--grace", "0", "--json") == 3
    assert json.loads(capsys.readouterr().out)["overdue"] == 2  # the season opened, and the registration


def test_verify_needs_only_public_keys_and_says_when_it_had_none(
    recorded: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ledger = JourneyLedger(recorded)
    chain = Chain(ledger, signing_keys(recorded, required=True))
    chain.seal_all()
    chain.checkpoint()
    ledger.close()
    assert cli(monkeypatch, recorded, "signing-key", "public") == 0
    public = tmp_path / "public.json"
    public.write_text(capsys.readouterr().out)
    monkeypatch.delenv("HAJJ_LEDGER_SIGNING_KEY_FILE")  # an auditor: no private key at hand
    assert cli(monkeypatch, recorded, "verify") == 4  # the chain holds, but no signature was checked
    assert "NOT VERIFIED" in capsys.readouterr().out
    assert cli(monkeypatch, recorded, "verify", "--keys", str(public)) == 0
    assert "OK: every sealed event" in capsys.readouterr().out


def test_verify_names_a_chain_no_signed_checkpoint_vouches_for_with_its_own_status(
    recorded: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Sealed without a signing key (a deployment that never set one): the events match the chain, but nothing
    signed vouches for the chain, so `verify` says so with a status of its own, and never OK."""
    monkeypatch.delenv("HAJJ_LEDGER_SIGNING_KEY_FILE")
    ledger = JourneyLedger(recorded)
    Chain(ledger).seal_all()
    ledger.close()
    assert cli(monkeypatch, recorded, "verify") == 5
    out = capsys.readouterr().out
    assert "no signed checkpoint" in out and "NOT VERIFIED" in out and "OK" not in out
    assert "HAJJ_LEDGER_SIGNING_KEY_FILE" in out and "hajj-ledger checkpoint" in out
    assert cli(monkeypatch, recorded, "verify", "--json") == 5
    report = json.loads(capsys.readouterr().out)
    assert (report["checkpoints"], report["exit"]) == (0, 5)
    with pytest.raises(SystemExit):
        main(["verify", "--help"])
    assert "5 no signed checkpoint vouches for the chain" in " ".join(capsys.readouterr().out.split())


def test_verify_export_finds_its_keys_from_any_directory_and_never_makes_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The demo store, as `make run` leaves it in the project's directory: its export verifies the same from
    another directory (the manifest names the key file that signed it), where no key is made; keys that do not hold
    the signer's, or none at all, are "not verified" (4), never "altered" (1)."""
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    monkeypatch.delenv("HAJJ_LEDGER_SIGNING_KEY_FILE")
    monkeypatch.delenv("HAJJ_LEDGER_DATABASE_URL", raising=False)
    monkeypatch.chdir(project)
    ledger = JourneyLedger()  # the demo store: var/hajj-ledger.sqlite3 here
    open_season(ledger)
    ledger.record(parse_command_json(registration()), Actor("mission-EGY-00001", Role.MISSION))
    ledger.close()
    assert main(["export", "--out", "exp"]) == 0
    assert (project / "var" / "demo-signing-keys.json").exists()
    capsys.readouterr()
    for directory in (project, elsewhere):
        monkeypatch.chdir(directory)
        assert main(["verify", "--export", str(project / "exp")]) == 0
        out = capsys.readouterr().out
        assert out.startswith("OK") and str(project / "var" / "demo-signing-keys.json") in out
    assert not (elsewhere / "var").exists()

    stranger = tmp_path / "stranger.json"
    assert main(["signing-key", "new", str(stranger)]) == 0
    monkeypatch.setenv("HAJJ_LEDGER_SIGNING_KEY_FILE", str(stranger))
    capsys.readouterr()
    assert main(["verify", "--export", str(project / "exp")]) == 4
    out = capsys.readouterr().out
    assert "NOT VERIFIED" in out and str(stranger) in out and "--keys" in out
    monkeypatch.delenv("HAJJ_LEDGER_SIGNING_KEY_FILE")
    (project / "var" / "demo-signing-keys.json").unlink()
    assert main(["verify", "--export", str(project / "exp"), "--json"]) == 4
    assert "--keys FILE" in json.loads(capsys.readouterr().out)["problems"][0]


@pytest.mark.parametrize("command", [["checkpoint"], ["seal"], ["signing-key", "public"], ["verify"], ["serve"]])
def test_a_missing_signing_key_file_is_named_with_its_variable_and_how_to_make_one(
    command: list[str],
    recorded: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("HAJJ_LEDGER_SIGNING_KEY_FILE", str(tmp_path / "keys" / "signing.json"))
    assert cli(monkeypatch, recorded, *command) == 2
    line = one_line(capsys.readouterr().err)
    assert str(tmp_path / "keys" / "signing.json") in line and "HAJJ_LEDGER_SIGNING_KEY_FILE" in line
    assert "signing-key new" in line and "Errno" not in line


def test_serve_on_a_busy_port_says_so_and_how_to_fix_it_before_serving(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert cli(monkeypatch, f"sqlite:///{tmp_path}/ledger.sqlite3", "serve", "--port", str(port)) == 2
    ran = capsys.readouterr()
    line = one_line(ran.err)
    assert f"port {port} on 127.0.0.1 is in use" in line and f"--port {port + 1}" in line
    assert "Serving" not in ran.out


def test_a_rerun_simulation_counts_repeats_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path}/ledger.sqlite3"
    assert cli(monkeypatch, url, "simulate", "--pilgrims", "12") == 0
    first = capsys.readouterr().out
    assert "(539 new, 0 already recorded, 0 refused)" in first
    assert cli(monkeypatch, url, "simulate", "--pilgrims", "12") == 0
    second = capsys.readouterr().out
    assert "(0 new, 539 already recorded, 0 refused)" in second and "events    0 " in second
    assert os.environ["HAJJ_LEDGER_DATABASE_URL"] == url  # SQLite: nothing to wait for


@pytest.mark.parametrize("command", [["history", str(uuid4())], ["trail", "--limit", "5"]], ids=lambda c: c[0])
def test_a_read_on_an_empty_store_creates_nothing(
    command: list[str], store_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    if store_url.startswith("sqlite"):
        Path(store_url.removeprefix("sqlite:///")).touch()  # a file, but no ledger in it
    assert cli(monkeypatch, store_url, *command) == 2
    assert "holds no ledger yet" in one_line(capsys.readouterr().err)
    assert cli(monkeypatch, store_url, *command) == 2  # still nothing there


@needs_postgres
def test_batch_jobs_wait_for_a_connection_longer_than_the_api(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(monkeypatch, postgres_url, "simulate", "--pilgrims", "1") == 0
    waited = os.environ["HAJJ_LEDGER_DATABASE_URL"]
    assert waited.startswith(postgres_url) and waited.endswith("connect_timeout=30")
    assert cli(monkeypatch, postgres_url, "history", str(uuid4())) == 1  # a read: the API's wait, and not found
    assert os.environ["HAJJ_LEDGER_DATABASE_URL"] == postgres_url
