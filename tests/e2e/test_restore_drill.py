"""A restore drill with pgBackRest, as docs/operations.md ("Backup and restore") tells an operator to run it: a
private primary archiving its WAL into a private repository (`initdb`, a free port, a temporary directory; the
shared PostgreSQL is never touched), a full backup, a named restore point, the primary crashed, then a
point-in-time restore into a new data directory and the ledger brought up on it.

What must hold: every command acknowledged before the restore point is in the restored store (its receipt), none
acknowledged after it is; `verify` passes once `seal` has run; `project --once` catches the views up and they equal
a replay of the log. What is measured (`bench/run.py --only restore` runs `drill` on a store of 10 M events): each
phase of the recovery, from the decision to restore to the ledger answering, verified and its views current (RTO),
and what archiving alone would have lost at the crash (RPO): the acknowledged commands whose WAL was not archived."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest

from hajj_ledger.domain.parsing import parse_command
from hajj_ledger.domain.vocabulary import Role
from hajj_ledger.ledger import JourneyLedger, Outcome
from tests.clusters import BIN, Cluster, as_postgres, new_primary, private_root, running
from tests.conftest import IN_CI
from tests.e2e.test_leadership import views_and_chain_hold
from tests.support import EXECUTABLE, actor, free_port, open_season, registration_command, run_cli

STANZA = "ledger"
POINT = "drill"  # the named restore point
PGBACKREST = shutil.which("pgbackrest") or "/usr/bin/pgbackrest"

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.serial,  # heavy: private clusters, a backup and a restore; run apart from the rest of the suite
    pytest.mark.skipif(not IN_CI and not (BIN / "initdb").exists(), reason="no PostgreSQL 15 binaries"),
]


@dataclass(frozen=True)
class Repository:
    """A pgBackRest repository, its configuration file and its stanza, all in `directory` (owned by `postgres`)."""

    directory: Path

    @property
    def config(self) -> Path:
        return self.directory / "pgbackrest.conf"

    @property
    def archive_command(self) -> str:
        return f"{PGBACKREST} --config={self.config} --stanza={STANZA} archive-push %p"

    def configure(self, cluster: Cluster) -> None:
        """The stanza's configuration, for `cluster` (after a restore: for the new cluster, before it starts, so that
        it archives its own WAL)."""
        as_postgres("mkdir", "-p", str(self.directory / "repo"), str(self.directory / "spool"))
        text = (
            f"[global]\nrepo1-path={self.directory / 'repo'}\nrepo1-retention-full=2\n"
            f"log-path={self.directory}\nlock-path={self.directory / 'lock'}\nspool-path={self.directory / 'spool'}\n"
            "log-level-console=warn\nlog-level-file=info\nstart-fast=y\ncompress-type=lz4\nprocess-max=2\n"
            f"\n[{STANZA}]\npg1-path={cluster.data}\npg1-port={cluster.port}\npg1-socket-path={cluster.directory}\n"
        )
        self.config.write_text(text)
        self.config.chmod(0o644)

    def run(self, *args: str, timeout: float = 3600) -> str:
        return as_postgres(PGBACKREST, f"--config={self.config}", f"--stanza={STANZA}", *args, timeout=timeout).stdout

    def size(self) -> int:
        """Bytes in the repository (backups and archived WAL)."""
        return sum(f.stat().st_size for f in (self.directory / "repo").rglob("*") if f.is_file())


def pgbackrest_present() -> None:
    """Skips where pgBackRest is missing; under CI fails, saying so (`.ci/run` installs it)."""
    if not Path(PGBACKREST).exists():
        message = "pgBackRest is not installed (Debian: apt-get install pgbackrest; .ci/run installs it)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


@dataclass
class Writes:
    """Registrations recorded through the ledger, a round at a time: the acknowledged command ids, each with the
    WAL segment holding its commit at the latest (the segment of the primary's WAL position once it was answered)
    and when it was answered."""

    ledger: JourneyLedger
    admin: psycopg.Connection[Any]
    acknowledged: dict[str, tuple[str, float]] = field(default_factory=dict)  # command id: (WAL segment, when)

    def round(self, commands: int) -> set[str]:
        batch = [registration_command("IDN") for _ in range(commands)]
        results = self.ledger.record_batch([(parse_command(c), actor(Role.MISSION)) for c in batch])
        assert all(isinstance(r, Outcome) for r in results), [r for r in results if not isinstance(r, Outcome)][:3]
        row = self.admin.execute("SELECT pg_walfile_name(pg_current_wal_lsn())").fetchone()
        assert row is not None
        ids = {c["command_id"] for c in batch}
        self.acknowledged.update(dict.fromkeys(ids, (row[0], time.monotonic())))
        return ids


@dataclass(frozen=True)
class Drilled:
    """A drill's figures: seconds of each phase of the recovery, and what was, or would have been, lost."""

    events: int  # in the store when it was backed up
    store_bytes: int  # the ledger's database then
    backup: float  # the full backup (before the crash: not part of the recovery)
    backup_bytes: int  # the repository's size after it (the backup and the WAL archived so far)
    restore: float  # `pgbackrest restore` into a new data directory: the backup's files and the recovery settings
    replay: float  # from starting the new cluster to its promotion: the archived WAL replayed up to the point
    seal: float  # `hajj-ledger seal`: the chain extended over what was written since the last seal
    verify: float  # `hajj-ledger verify`: every sealed event against the chain, every checkpoint's signature
    views: float  # `hajj-ledger project --once`: the views caught up to the restored head
    answering: float  # `hajj-ledger record`: a first command acknowledged by the restored store
    before_point: int  # commands acknowledged before the restore point
    lost_before_point: int  # of those, missing from the restored store (RPO of a point-in-time restore: 0)
    after_point: int  # acknowledged after it: none may be in the restored store
    unarchived: int  # acknowledged after the last WAL segment archived before the crash: archiving alone loses them
    unarchived_seconds: float  # from the first of them being acknowledged to the crash

    @property
    def rto(self) -> float:
        """From the decision to restore to the ledger answering, verified, its views current."""
        return self.restore + self.replay + self.seal + self.verify + self.views + self.answering


def drill(
    root: Path,
    env: dict[str, str],
    *,
    grow: Callable[[str], object] = lambda url: None,
    rounds: int = 3,
    commands: int = 20,
    unarchived_for: float = 1.0,
    server: dict[str, str] | None = None,
    thorough: bool = True,
) -> Drilled:
    """The whole drill, checked; its figures. `grow` fills the store before the first writes (the benchmark's
    10 M events); each write phase is `rounds` rounds of `commands` registrations; the writes that are never
    archived go on for `unarchived_for` seconds before the crash; `server`: more of the primary's settings.
    `thorough`: the checks that cost the store's size again, which the benchmark leaves out on 10 M events: what
    archiving alone loses found by a second restore, to the end of the archive, as well as counted by WAL segment;
    every view compared with a rebuild from the log."""
    repository = Repository(root / "pgbackrest")
    as_postgres("mkdir", "-p", str(repository.directory))
    primary = Cluster(root / "primary", free_port())
    repository.configure(primary)
    # archive_timeout as the docs advise: at most a minute of writes waits in an unfinished WAL segment.
    settings = {"archive_mode": "on", "archive_command": repository.archive_command, "archive_timeout": "60",
                **(server or {})}  # fmt: skip
    primary = new_primary(primary.directory, settings, port=primary.port)
    restored = Cluster(root / "restored", free_port())
    with running(primary, restored):
        repository.run("stanza-create")
        repository.run("check")
        grow(primary.url)
        ledger_env = {**env, "HAJJ_LEDGER_DATABASE_URL": primary.url}
        in_process("migrate", env=ledger_env)
        with (
            contextlib.closing(JourneyLedger(primary.url)) as ledger,
            psycopg.connect(primary.url, autocommit=True) as admin,
        ):
            open_season(ledger)  # unless the store grown before has it opened
            writes = Writes(ledger, admin)
            before = set().union(*(writes.round(commands) for _ in range(rounds)))
            in_process("project", "--once", env=ledger_env)
            in_process("seal", env=ledger_env)
            events = ledger.head()
            [store_bytes] = admin.execute("SELECT pg_database_size(current_database())").fetchone()  # type: ignore[misc]
            started = time.monotonic()
            repository.run("backup", "--type=full")
            backup = time.monotonic() - started
            backup_bytes = repository.size()
            before |= set().union(*(writes.round(commands) for _ in range(rounds)))
            admin.execute("SELECT pg_create_restore_point(%s)", (POINT,))
            after = set().union(*(writes.round(commands) for _ in range(rounds)))
            # The segment holding the point (and the writes after it) archived, as archive_timeout would do.
            [archived_up_to] = admin.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()  # type: ignore[misc]
            wait_archived(admin, archived_up_to)
            unarchived_since = time.monotonic()
            while time.monotonic() - unarchived_since < unarchived_for:
                after |= writes.round(commands)
            [last_archived] = admin.execute("SELECT last_archived_wal FROM pg_stat_archiver").fetchone()  # type: ignore[misc]
            primary.crash()
            crashed = time.monotonic()
        unarchived = {c for c, (segment, _) in writes.acknowledged.items() if segment[8:] > last_archived[8:]}
        first_unarchived = min((writes.acknowledged[c][1] for c in unarchived), default=crashed)
        if thorough:
            kept = restored_receipts(repository, Cluster(root / "archived", free_port()))
            assert set(writes.acknowledged) - kept == unarchived, "archiving alone lost other commands than counted"

        # The decision to restore: a new data directory, from the repository alone.
        started = time.monotonic()
        as_postgres("mkdir", "-p", "-m", "700", str(restored.data))
        repository.run(
            f"--pg1-path={restored.data}", "restore", "--type=name", f"--target={POINT}", "--target-action=promote"
        )
        repository.configure(restored)
        restore = time.monotonic() - started
        started = time.monotonic()
        restored.start()
        while restored.sql("SELECT pg_is_in_recovery()")[0]:
            time.sleep(0.05)
        replay = time.monotonic() - started
        restored_env = {**env, "HAJJ_LEDGER_DATABASE_URL": restored.url}
        seal = timed(lambda: cli("seal", env=restored_env))
        verify = timed(lambda: cli("verify", env=restored_env))
        views = timed(lambda: cli("project", "--once", env=restored_env))
        answering = timed(lambda: cli("record", "--role", "mission", "--agency", "mission-IDN-7",
                                      stdin=json.dumps(registration_command("IDN")), env=restored_env))  # fmt: skip

        for step in ("seal", "project --once"):  # the first command's event too, for the checks below
            in_process(*step.split(), env=restored_env)
        receipts = command_ids(restored)
        assert not (after & receipts), f"{len(after & receipts)} command(s) after the restore point were restored"
        lost = before - receipts
        assert not lost, f"{len(lost)} command(s) acknowledged before the restore point lost, e.g. {sorted(lost)[:3]}"
        if thorough:
            assert '"unsealed": 0' in (report := views_and_chain_hold(restored.url, restored_env)), report
    return Drilled(
        events, store_bytes, backup, backup_bytes, restore, replay, seal, verify, views, answering, len(before),
        len(lost), len(after), len(unarchived), crashed - first_unarchived,
    )  # fmt: skip


def command_ids(cluster: Cluster) -> set[str]:
    """The command ids of the receipts in the cluster's ledger."""
    with psycopg.connect(cluster.url) as connection:
        return {r[0] for r in connection.execute("SELECT command_id::text FROM command_receipts")}


def restored_receipts(repository: Repository, cluster: Cluster) -> set[str]:
    """The receipts of a restore to the end of the archive (into `cluster`, not archiving: it leaves the repository
    as it was)."""
    as_postgres("mkdir", "-p", "-m", "700", str(cluster.data))
    repository.run(f"--pg1-path={cluster.data}", "restore", "--archive-mode=off")
    cluster.start()
    with running(cluster):
        while cluster.sql("SELECT pg_is_in_recovery()")[0]:
            time.sleep(0.05)
        return command_ids(cluster)


def wait_archived(admin: psycopg.Connection[Any], segment: str, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while True:
        row = admin.execute("SELECT last_archived_wal, last_failed_wal FROM pg_stat_archiver").fetchone()
        assert row is not None
        if row[0] is not None and row[0][8:] >= segment[8:]:
            return
        assert time.monotonic() < deadline, f"{segment} not archived within {within} s (last failed: {row[1]})"
        time.sleep(0.05)


def cli(*args: str, env: dict[str, str], stdin: str = "") -> str:
    """`hajj-ledger ARGS` as an operator runs it, a process; fails with what it said."""
    done = subprocess.run(
        [str(EXECUTABLE), *args], input=stdin, capture_output=True, text=True, env=env, timeout=3600, check=False
    )
    assert done.returncode == 0, f"hajj-ledger {' '.join(args)}: {done.stdout}{done.stderr}"
    return done.stdout


def in_process(*args: str, env: dict[str, str]) -> None:
    """`hajj-ledger ARGS` in this process, where the drill times nothing (a process costs seconds on a busy
    machine)."""
    done = run_cli(*args, env=env)
    assert done.returncode == 0, f"hajj-ledger {' '.join(args)}: {done.stdout}{done.stderr}"


def timed(step: Callable[[], object]) -> float:
    started = time.monotonic()
    step()
    return time.monotonic() - started


@pytest.fixture
def root() -> Iterator[Path]:
    with private_root("hajj-ledger-restore-") as directory:
        yield directory


def test_a_point_in_time_restore_brings_back_every_acknowledged_command_before_the_point_and_none_after(
    root: Path,
) -> None:
    pgbackrest_present()
    drilled = drill(root, dict(os.environ))
    print(f"restore drill: {drilled}, RTO {drilled.rto:.1f} s")
    assert drilled.before_point > 0 and drilled.after_point > 0, drilled
    assert drilled.unarchived > 0, drilled  # archiving alone loses the writes of the unfinished segment


def test_without_pgbackrest_the_drill_fails_under_ci_saying_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.modules[__name__], "PGBACKREST", "/nowhere/pgbackrest")
    monkeypatch.setattr(sys.modules[__name__], "IN_CI", True)
    with pytest.raises(pytest.fail.Exception, match=r"pgBackRest is not installed \(Debian: apt-get install"):
        pgbackrest_present()
