"""The settings: one object reads every HAJJ_LEDGER_* variable, refuses a bad one in a line, and documents them all;
logging is set up in one place."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from hajj_ledger.settings import DEFAULT_DATABASE_URL, Settings, SettingsError, render_markdown, settings, variable_for
from tests.support import run_cli

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [path for room in ("src", "projections", "api") for path in (ROOT / room).rglob("*.py")]
SETTINGS = ROOT / "src" / "hajj_ledger" / "settings.py"


def test_the_docs_show_every_variable_as_the_settings_have_it() -> None:
    assert render_markdown() in (ROOT / "docs" / "configuration.md").read_text()


def test_the_command_line_prints_the_table_the_docs_show() -> None:
    ran = run_cli("settings")
    assert ran.returncode == 0 and ran.stdout == render_markdown()


def test_every_field_is_described_and_named_by_its_variable() -> None:
    for name, field in Settings.model_fields.items():
        assert field.description, name
        assert f"| `HAJJ_LEDGER_{name.upper()}` |" in render_markdown()
    with pytest.raises(KeyError):
        variable_for("databse_url")


def test_only_the_settings_read_the_environment() -> None:
    """A module may point a variable elsewhere (the command line: the store at an archive), never read one."""
    reading = re.compile(r"os\.getenv|os\.environ(?!\[[A-Z_]+\] =)")
    readers = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in SOURCES
        if path != SETTINGS
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if reading.search(line)
    ]
    assert readers == []


def test_every_variable_the_code_names_is_a_setting() -> None:
    named = {found for path in SOURCES for found in re.findall(r"HAJJ_LEDGER_[A-Z_]*[A-Z]", path.read_text())}
    fields = {variable_for(name) for name in Settings.model_fields}
    assert named - fields == set()


def test_logging_is_set_up_in_one_place() -> None:
    setups = [path.relative_to(ROOT) for path in SOURCES if "basicConfig" in path.read_text()]
    assert setups == [Path("src/hajj_ledger/logs.py")]


def test_a_long_running_command_logs_its_records_with_time_level_and_logger_and_the_access_log_as_written() -> None:
    said = subprocess.run(
        [sys.executable, "-c", "import logging; from hajj_ledger.logs import configure_logging; configure_logging(); "
         "logging.getLogger('hajj_ledger.leadership').info('leading'); "
         "logging.getLogger('hajj_ledger.access').info('GET /v1/agency 200')"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    leading, access = said.stderr.splitlines()
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO hajj_ledger\.leadership: leading", leading)
    assert access == "GET /v1/agency 200"


def test_unset_and_empty_variables_take_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HAJJ_LEDGER_DATABASE_URL", "")
    monkeypatch.delenv("HAJJ_LEDGER_PORT", raising=False)
    given = settings()
    assert given.database_url == DEFAULT_DATABASE_URL and given.port == 8000 and given.direct_database_url is None


def test_a_variable_changed_is_read_again_and_an_unchanged_one_is_not(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HAJJ_LEDGER_FEED_BUFFER", "40")
    first = settings()
    assert first.feed_buffer == 40 and settings() is first
    monkeypatch.setenv("HAJJ_LEDGER_FEED_BUFFER", "41")
    assert settings().feed_buffer == 41
    monkeypatch.setenv("HAJJ_LEDGER_FEED_BUFFER", "40")
    assert settings() is first


@pytest.mark.parametrize(
    ("variable", "value", "reason"),
    [
        ("HAJJ_LEDGER_PORT", "80a", "input should be a valid integer, unable to parse string as an integer"),
        ("HAJJ_LEDGER_PORT", "70000", "input should be less than or equal to 65535 (got '70000')"),
        ("HAJJ_LEDGER_WRITE_POOL_OVERFLOW", "-1", "input should be greater than or equal to 0 (got '-1')"),
        ("HAJJ_LEDGER_MAX_WAIT", "inf", "input should be a finite number (got 'inf')"),
        ("HAJJ_LEDGER_FEED_HEARTBEAT", "0", "input should be greater than 0 (got '0')"),
        ("HAJJ_LEDGER_DEBUG", "yes please", "input should be a valid boolean, unable to interpret input"),
    ],
)
def test_a_bad_value_is_refused_naming_the_variable_and_the_reason(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, reason: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as refused:
        settings()
    assert str(refused.value).startswith(f"{variable}: {reason}")


def test_every_bad_value_is_named_on_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HAJJ_LEDGER_WORKERS", "many")
    monkeypatch.setenv("HAJJ_LEDGER_KEY_RECHECK", "soon")
    with pytest.raises(SettingsError) as refused:
        settings()
    assert "\n" not in str(refused.value)
    assert "HAJJ_LEDGER_WORKERS: " in str(refused.value) and "; HAJJ_LEDGER_KEY_RECHECK: " in str(refused.value)


def test_a_command_refuses_a_bad_value_before_it_starts_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HAJJ_LEDGER_DEBUG", "1")  # a traceback for anything unexpected: a bad value is not that
    ran = run_cli("rules", env={"HAJJ_LEDGER_READ_POOL_SIZE": "eight"})
    assert ran.returncode == 2 and ran.stdout == ""
    assert ran.stderr == (
        "hajj-ledger: HAJJ_LEDGER_READ_POOL_SIZE: input should be a valid integer, unable to parse string as an "
        "integer (got 'eight')\n"
    )
