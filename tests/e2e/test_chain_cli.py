"""`hajj-ledger seal | checkpoint | verify | proof | signing-key`, run as an operator and an auditor run them."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import psycopg

from tests.support import Ran, run_cli


def run(store_url: str, keys: Path, *args: str) -> Ran:
    """In process (tests/e2e/test_cli_pipes.py runs `proof` as a process)."""
    return run_cli(*args, env={"HAJJ_LEDGER_DATABASE_URL": store_url, "HAJJ_LEDGER_SIGNING_KEY_FILE": str(keys)})


def tamper(store_url: str, position: int) -> None:
    """Change one byte of the event at `position`, behind the ledger's back."""
    if store_url.startswith("postgresql"):
        with psycopg.connect(store_url, autocommit=True) as connection:
            connection.execute(
                "UPDATE journeyledger_events SET state = overlay(state PLACING '~' FROM 3 FOR 1) "
                "WHERE notification_id = %s",
                (position,),
            )
        return
    with sqlite3.connect(store_url.removeprefix("sqlite:///")) as connection:
        connection.execute(
            "UPDATE stored_events SET state = CAST(replace(state, '\"', '~') AS BLOB) WHERE rowid = ?", (position,)
        )


def test_an_operator_seals_an_auditor_verifies_and_finds_a_changed_event(store_url: str, tmp_path: Path) -> None:
    keys = tmp_path / "signing.json"
    made = run(store_url, keys, "signing-key", "new", str(keys))
    assert made.returncode == 0 and keys.exists(), made.stderr
    assert run(store_url, keys, "signing-key", "new", str(keys)).returncode != 0  # never overwritten
    assert run(store_url, keys, "simulate", "--pilgrims", "20", "--season", "1446").returncode == 0
    sealed = run(store_url, keys, "seal")
    assert sealed.returncode == 0 and "latest checkpoint" in sealed.stdout, sealed.stderr

    public = tmp_path / "public.json"
    printed = run(store_url, keys, "signing-key", "public")
    assert printed.returncode == 0
    public.write_text(printed.stdout)
    assert "private" not in printed.stdout

    rotated = run(store_url, keys, "signing-key", "rotate")
    assert rotated.returncode == 0, rotated.stderr
    assert run(store_url, keys, "simulate", "--pilgrims", "5", "--season", "1445").returncode == 0
    checkpoint = run(store_url, keys, "checkpoint")
    assert checkpoint.returncode == 0, checkpoint.stderr
    head = json.loads(checkpoint.stdout)["position"]

    # The auditor's copy of the public keys predates the rotation: the new key's checkpoints are unknown to it.
    stale = run(store_url, keys, "verify", "--keys", str(public))
    assert stale.returncode == 1 and "unknown-key" in stale.stdout
    public.write_text(run(store_url, keys, "signing-key", "public").stdout)
    ok = run(store_url, keys, "verify", "--keys", str(public))
    assert ok.returncode == 0 and "OK" in ok.stdout, ok.stdout + ok.stderr

    proof = run(store_url, keys, "proof", str(head // 2))
    assert proof.returncode == 0 and json.loads(proof.stdout)["position"] == head // 2

    tamper(store_url, head // 3)
    failed = run(store_url, keys, "verify", "--keys", str(public), "--json")
    assert failed.returncode == 1
    report = json.loads(failed.stdout)
    assert report["first"] == {**report["first"], "position": head // 3, "kind": "changed"}


def test_an_analyst_exports_and_verifies_then_appends(store_url: str, tmp_path: Path) -> None:
    keys = tmp_path / "signing.json"
    assert run(store_url, keys, "signing-key", "new", str(keys)).returncode == 0
    assert run(store_url, keys, "simulate", "--pilgrims", "15", "--season", "1446").returncode == 0
    assert run(store_url, keys, "migrate").returncode == 0
    out = tmp_path / "snapshot"
    exported = run(store_url, keys, "export", "--out", str(out))
    assert exported.returncode == 0, exported.stderr
    first = json.loads((out / "manifest.json").read_text())["position"]
    assert f"as of position {first:,}" in exported.stdout
    checked = run(store_url, keys, "verify", "--export", str(out))
    assert checked.returncode == 0 and "OK" in checked.stdout, checked.stdout + checked.stderr

    assert run(store_url, keys, "simulate", "--pilgrims", "4", "--season", "1445").returncode == 0
    refused = run(store_url, keys, "export", "--out", str(out))
    assert refused.returncode != 0 and "not empty" in refused.stderr
    appended = run(store_url, keys, "export", "--out", str(out), "--since", str(first), "--format", "parquet")
    assert appended.returncode == 0, appended.stderr
    assert len(list((out / "events").iterdir())) == 2
    assert run(store_url, keys, "verify", "--export", str(out)).returncode == 0

    (out / "season_funnel.parquet").write_bytes((out / "season_funnel.parquet").read_bytes()[:-1] + b"\0")
    broken = run(store_url, keys, "verify", "--export", str(out), "--json")
    assert broken.returncode == 1 and "season_funnel" in json.loads(broken.stdout)["problems"][0]
