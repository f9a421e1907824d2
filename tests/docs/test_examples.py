"""The worked examples of docs/examples/, run against a real server (`hajj-ledger serve`) on both stores: a season's
first day in curl and in Python, each output as the example shows it, so the docs and the code cannot drift; and the
pages show these same files (MkDocs' snippets), the README its first write."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hajj_ledger.api import agencies
from hajj_ledger.domain.vocabulary import Role
from hajj_ledger.migrations import upgrade
from hajj_ledger.projections.schema import engine_for
from tests.docs.test_docs import DEMO_COMPANY, DEMO_MISSION, README, ROOT, example
from tests.support import EXECUTABLE, season_opened, serving

EXAMPLES = ROOT / "docs" / "examples"
CURL = ["market.sh", "pilgrim.sh", "bus.sh", "feed.sh", "proof.sh", "export.sh"]  # first-day.sh's order
# An output an example shows: a comment line of JSON, or the proof's verdict; … stands for what varies.
OUTPUT = re.compile(r"# ([{\[].*|OK: .*)")


def shown(path: Path) -> list[str]:
    return [found[1] for line in path.read_text().splitlines() if (found := OUTPUT.fullmatch(line))]


def assert_shown(expected: list[str], printed: list[str]) -> None:
    assert len(printed) == len(expected), "\n".join(["printed:", *printed, "shown:", *expected])
    for line, output in zip(expected, printed, strict=True):
        assert re.fullmatch(".*".join(map(re.escape, line.split("…"))), output), (line, output)


@pytest.fixture
def first_day(store_url: str, tmp_path: Path) -> dict[str, str]:
    """A real server on a store with season 1446 open, and the environment the examples take: its address, and a
    key for each role in the variable of its name (the demo's mission and company, whose ids the examples name)."""
    engine = engine_for(store_url)
    upgrade(engine)
    scopes = {Role.MISSION: DEMO_MISSION, Role.COMPANY: DEMO_COMPANY}
    with engine.begin() as connection:
        keys = {role.name: agencies.add(connection, role, f"the {role}", scopes.get(role))[1] for role in Role}
    engine.dispose()
    season_opened(store_url)
    signing = tmp_path / "signing.json"
    subprocess.run([str(EXECUTABLE), "signing-key", "new", str(signing)], check=True, capture_output=True)
    return {
        **os.environ, **keys, "HAJJ_LEDGER_DATABASE_URL": store_url, "HAJJ_LEDGER_SIGNING_KEY_FILE": str(signing),
        "HAJJ_LEDGER_EXPORT_DIR": str(tmp_path / "exports"),
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",  # python3 with duckdb, as `pip install` gives
    }  # fmt: skip


def run(command: list[str], env: dict[str, str], cwd: Path) -> list[str]:
    ran = subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, timeout=180)
    assert ran.returncode == 0, ran.stderr + ran.stdout
    return ran.stdout.splitlines()


def test_the_first_day_in_curl(first_day: dict[str, str], tmp_path: Path) -> None:
    with serving(first_day, tmp_path / "serve.log") as (base,):
        printed = run(["bash", str(EXAMPLES / "first-day.sh")], {**first_day, "API": f"{base}/v1"}, tmp_path)
    assert_shown([line for name in CURL for line in shown(EXAMPLES / name)], printed)


def test_the_first_day_in_python(first_day: dict[str, str], tmp_path: Path) -> None:
    with serving(first_day, tmp_path / "serve.log") as (base,):
        printed = run([sys.executable, str(EXAMPLES / "first_day.py")], {**first_day, "API": f"{base}/v1"}, tmp_path)
    assert_shown(shown(EXAMPLES / "first_day.py"), printed)


def test_the_pages_show_the_examples_themselves() -> None:
    """The README's first write is docs/examples/first-write.sh as it stands; the pages include the files."""
    assert example(README, "min_position") == (EXAMPLES / "first-write.sh").read_text()
    included = {
        name
        for page in (ROOT / "docs").glob("*.md")
        for name in re.findall(r'--8<-- "docs/examples/([^"]+)"', page.read_text())
    }
    assert included == {path.name for path in EXAMPLES.iterdir()}
