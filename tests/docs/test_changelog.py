"""The version in one place: pyproject.toml sets it, the changelog's latest release names it, the command says it."""

from __future__ import annotations

import re
from importlib.metadata import version
from pathlib import Path

from tests.support import run_cli

CHANGELOG = Path(__file__).parents[2] / "CHANGELOG.md"
RELEASE = re.compile(r"^## \[(?P<version>\d+\.\d+\.\d+)\] - \d{4}-\d{2}-\d{2}$", re.MULTILINE)


def test_the_changelogs_latest_release_is_the_version_installed() -> None:
    releases = RELEASE.findall(CHANGELOG.read_text(encoding="utf-8"))
    assert releases, "CHANGELOG.md names no release as '## [X.Y.Z] - YYYY-MM-DD'"
    assert releases[0] == version("hajj-ledger")


def test_the_command_says_its_version() -> None:
    ran = run_cli("--version")
    assert (ran.returncode, ran.stdout) == (0, f"hajj-ledger {version('hajj-ledger')}\n")
