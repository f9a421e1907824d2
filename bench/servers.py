"""The servers the bench starts: each in its own process group, ready when /readyz answers, stopped with its group
(SIGTERM, then SIGKILL), so that nothing it started outlives a run."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from bench.harness import ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def process_tree(pid: int) -> dict[int, list[str]]:
    """The process and its descendants, with their command lines."""
    found: dict[int, list[str]] = {}
    todo = [pid]
    while todo:
        parent = todo.pop()
        with contextlib.suppress(OSError):
            found[parent] = Path(f"/proc/{parent}/cmdline").read_bytes().decode().split("\0")
        for task in Path(f"/proc/{parent}/task").glob("*"):  # a child started from a thread is that thread's
            with contextlib.suppress(OSError):
                todo += map(int, (task / "children").read_text().split())
    return found


def role_of(argv: list[str]) -> str:
    """What a node's process is, from its command line: its background jobs, an HTTP worker, or the main one."""
    for command, role in (("project", "runner"), ("seal", "sealer"), ("worker", "jobs")):
        if command in argv[1:]:
            return role
    return "http worker" if any("multiprocessing" in a for a in argv) else "main"


class Server:
    """A server in its own process group, ready when /readyz answers (the baseline answers it 401)."""

    def __init__(self, name: str, argv: list[str], port: int, url: str, logs: Path, env: dict[str, str]) -> None:
        self.name, self.port, self.log, self.argv = name, port, logs / f"{name}.log", argv
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), "HAJJ_LEDGER_DATABASE_URL": url, **env}
        self.process = self._spawn()

    def _spawn(self) -> subprocess.Popen[bytes]:
        with self.log.open("a") as log:
            return subprocess.Popen(
                self.argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=self.env
            )

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        starts = 1
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.stop()
                # The database server is shared: wait for a free connection slot, a few times, then give up.
                if starts < 4 and "too many clients" in self.log.read_text(errors="replace")[-3000:]:
                    time.sleep(2 * starts)
                    starts += 1
                    self.process = self._spawn()
                    continue
                raise RuntimeError(f"{self.name} exited ({self.process.returncode}); its log: {self.log}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=2)
                return
            except urllib.error.HTTPError as error:
                if error.code == 401:  # the baseline: up
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready within {timeout:.0f} s; its log: {self.log}")

    def tree(self) -> dict[int, list[str]]:
        return process_tree(self.process.pid)

    def stop(self) -> None:
        """SIGTERM to the whole group, SIGKILL to whatever is left of it after 15 s."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                os.killpg(self.process.pid, 0)  # ProcessLookupError once the group is empty
                self.process.poll()
                time.sleep(0.1)
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


@contextlib.contextmanager
def servers(*started: Server) -> Iterator[list[Server]]:
    """Servers started together, waited for together, always stopped."""
    try:
        for server in started:
            server.wait_ready()
        yield list(started)
    finally:
        for server in started:  # all told at once, then each waited for
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.process.pid, signal.SIGTERM)
        for server in started:
            server.stop()
