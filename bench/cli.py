"""How long the command line takes to start and answer (`--only cli`): each command a fresh process, as a user
runs it."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from typing import Any
from uuid import uuid4

from bench.harness import CLI, SEASON, SEED, SMOKE, Sizes, fresh_store, now


def cli_figure(sizes: Sizes, kind: str) -> dict[str, Any]:
    """Seconds from starting `hajj-ledger --help | status | history | record` to its exit, the median of several
    runs on a store of a small simulated season, migrated (`status` reads the read models' positions)."""
    runs = 1 if sizes is SMOKE else 9  # --smoke: one run each
    with fresh_store(kind) as url, tempfile.TemporaryDirectory(prefix="hajj-bench-pycache-") as pycache:
        # As a user's second run finds it: the package's bytecode compiled by the first (the untimed set-up below),
        # even where PYTHONDONTWRITEBYTECODE is set (then every run compiles the package's sources again).
        env = {**os.environ, "HAJJ_LEDGER_DATABASE_URL": url, "PYTHONPYCACHEPREFIX": pycache}
        env.pop("PYTHONDONTWRITEBYTECODE", None)

        def timed(*args: str) -> float:
            started = time.perf_counter()
            subprocess.run([str(CLI), *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=True)
            return time.perf_counter() - started

        timed("simulate", "--pilgrims", "60", "--seed", str(SEED))
        timed("migrate")
        pilgrim = str(uuid4())

        def registration(pilgrim_id: str) -> str:
            fields = {"event": "Registered", "command_id": str(uuid4()), "pilgrim_id": pilgrim_id}
            return json.dumps({**fields, "occurred_at": "2025-05-01T08:00:00Z", "season": SEASON, "country": "EGY"})

        mission = ["--role", "mission", "--agency", "mission-EGY-00001"]
        timed("record", registration(pilgrim), *mission)
        commands: dict[str, Callable[[], list[str]]] = {
            "--help": lambda: ["--help"],
            "status": lambda: ["status"],
            "history": lambda: ["history", pilgrim, "--season", str(SEASON)],
            "record": lambda: ["record", registration(str(uuid4())), *mission],
        }
        figures = {}
        for name, argv in commands.items():
            seconds = [timed(*argv()) for _ in range(runs)]
            figures[name] = {"median": statistics.median(seconds), "min": min(seconds), "max": max(seconds)}
        load = os.getloadavg()[0]  # the figures depend on it: other work on the machine slows a start down
    return {"commands": figures, "runs": runs, "load": load, "when": now()}
