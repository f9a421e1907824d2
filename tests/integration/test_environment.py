"""The suite does not depend on the shell it runs in: a sample of it passes in a shell that sets every HAJJ_LEDGER_*
variable the ledger reads, each to a value no test wants."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hajj_ledger.identity.vault import generate_key
from hajj_ledger.settings import Settings, variable_for

ROOT = Path(__file__).resolve().parents[2]
# Unit and store tests that read the settings on every path: the store, the pools, the keys, the command line.
SAMPLE = [
    "tests/unit/test_connections.py",
    "tests/unit/test_preflight.py",
    "tests/unit/test_settings.py",
    "tests/integration/test_vault.py::test_rotating_the_master_key",
    "tests/integration/test_vault.py::test_a_wrong_or_missing_master_key",
    "tests/integration/test_cli_edges.py",
]


def test_a_sample_of_the_suite_passes_in_a_shell_that_sets_every_variable_wrongly(tmp_path: Path) -> None:
    # "wrong" is no value any typed setting takes, so a variable that reached a test would fail it; the master key
    # is a good one, but an operator's, as docs/identity.md has one set it (it once failed the vault's rotation).
    wrong = {variable_for(name): "wrong" for name in Settings.model_fields}
    wrong[variable_for("master_keys")] = f"operator-1:{generate_key()}"
    shell = {name: value for name, value in os.environ.items() if not name.startswith(("PYTEST_XDIST", "PYTEST_CUR"))}
    ran = subprocess.run(
        [sys.executable, "-m", "pytest", *SAMPLE, "-q", "-p", "no:randomly", "-p", "no:cacheprovider",
         f"--basetemp={tmp_path / 'sample'}"],
        cwd=ROOT, env={**shell, **wrong}, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    summary = ran.stdout.strip().splitlines()[-1] if ran.stdout.strip() else ran.stderr
    assert ran.returncode == 0, ran.stdout[-4000:] + ran.stderr[-2000:]
    assert " passed" in summary and "failed" not in summary and "error" not in summary, summary
