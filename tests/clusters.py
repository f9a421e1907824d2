"""Private PostgreSQL clusters for the tests that need a server of their own (a standby, a crash, a restore): made
in a temporary directory with the PostgreSQL 15 binaries (`initdb`, `pg_basebackup -R`), run as the `postgres` OS
user on free ports. The shared PostgreSQL on 5432 is never touched."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from tests.support import free_port

BIN = Path("/usr/lib/postgresql/15/bin")


def as_postgres(*command: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`command` run as the `postgres` OS user (the clusters' owner) when run as root; fails with its output."""
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    done = subprocess.run([*prefix, *command], capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise subprocess.CalledProcessError(done.returncode, command, done.stdout, done.stderr)
    return done


@dataclass
class Cluster:
    directory: Path  # holds `data` (the data directory), `log` and the server's socket
    port: int

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/ledger"

    def start(self) -> None:
        as_postgres(
            str(BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.directory / "log"), "-w",
            "-o", f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.directory}", "start",
        )  # fmt: skip

    def stop(self) -> None:
        as_postgres(str(BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def crash(self) -> None:
        """Gone at once, as a machine that fails (no shutdown checkpoint, every connection cut)."""
        as_postgres(str(BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def promote(self) -> None:
        """A standby made the primary (it waits until the server takes writes)."""
        as_postgres(str(BIN / "pg_ctl"), "-D", str(self.data), "-w", "promote")

    def sql(self, statement: str) -> Any:
        with psycopg.connect(self.url, autocommit=True) as connection:
            return connection.execute(statement).fetchone()


@contextlib.contextmanager
def private_root(prefix: str) -> Iterator[Path]:
    """A new temporary directory the `postgres` OS user owns, removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def new_primary(directory: Path, settings: Mapping[str, str] | None = None, *, port: int | None = None) -> Cluster:
    """A new cluster in `directory` (initdb) on `port` (a free one by default), `settings` added to its
    postgresql.conf, started, with an empty database `ledger`."""
    primary = Cluster(directory, port or free_port())
    as_postgres("mkdir", "-p", str(directory))
    as_postgres(str(BIN / "initdb"), "-D", str(primary.data), "-U", "postgres", "--auth=trust", "--no-sync")
    if settings:
        with (primary.data / "postgresql.conf").open("a") as conf:  # root appends; the file stays the owner's
            conf.writelines(f"{name} = '{value}'\n" for name, value in settings.items())
    primary.start()
    with psycopg.connect(primary.url.replace("/ledger", "/postgres"), autocommit=True) as admin:
        admin.execute("CREATE DATABASE ledger")
    return primary


@contextlib.contextmanager
def running(*clusters: Cluster) -> Iterator[None]:
    """Stops the clusters afterwards (those a test has not stopped itself)."""
    try:
        yield
    finally:
        for cluster in reversed(clusters):
            with contextlib.suppress(subprocess.CalledProcessError):  # a test stopped it
                cluster.stop()


@contextlib.contextmanager
def primary_and_standby(*, synchronous: bool = False) -> Iterator[tuple[Cluster, Cluster]]:
    """A private primary and a streaming standby of it (`pg_basebackup -R`), on free ports, torn down afterwards.
    `synchronous`: the primary waits for the standby's flush before each commit returns (RPO 0); set after the base
    backup, so that the standby, once promoted, waits for no standby of its own."""
    with private_root("hajj-ledger-replica-") as root:
        standby = Cluster(root / "standby", free_port())
        primary = new_primary(root / "primary")
        with running(primary):
            as_postgres("mkdir", "-p", str(standby.directory))
            as_postgres(
                str(BIN / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres",
                "-D", str(standby.data), "-R", "-X", "stream", "--checkpoint=fast",
            )  # fmt: skip
            standby.start()
            with running(standby):
                if synchronous:
                    with psycopg.connect(primary.url, autocommit=True) as admin:
                        admin.execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
                        admin.execute("SELECT pg_reload_conf()")
                    deadline = time.monotonic() + 30
                    while primary.sql("SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'")[0] != 1:
                        assert time.monotonic() < deadline, "the standby never became synchronous"
                        time.sleep(0.05)
                yield primary, standby
