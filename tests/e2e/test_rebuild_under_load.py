"""`hajj-ledger rebuild` of every view while a server takes writes at about 1,000 events/s and agencies read: the
new generations are built beside the serving ones and swapped in, so no read answers an error and none sees a view
older than one it saw before (issue 29: "a rebuild that the serving side never notices")."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from hajj_ledger.api import agencies
from hajj_ledger.domain.vocabulary import Role
from hajj_ledger.migrations import upgrade
from hajj_ledger.projections import FOLLOWED
from hajj_ledger.projections.schema import engine_for, positions
from tests.support import EXECUTABLE, eventually, registration_command, season_opened, serving

MISSION = "mission-IDN-7"
BATCH = 100  # registrations a request, one event each
EVERY = 0.1  # seconds between two requests: about 1,000 events/s
SEEDED = 10  # batches of 1,000 registrations in the store before the rebuild, so that it takes a while


@dataclass
class Seen:
    """What one reader was answered, in order."""

    failures: list[str] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)  # the view's position in each page's answer
    registered: list[int] = field(default_factory=list)  # the funnel's registered count in each summary


@pytest.fixture
def server(postgres_url: str, tmp_path: Path) -> Iterator[tuple[str, dict[str, str], dict[str, str]]]:
    env = {**os.environ, "HAJJ_LEDGER_DATABASE_URL": postgres_url}
    engine = engine_for(postgres_url)
    upgrade(engine)
    with engine.begin() as connection:
        keys = {
            "mission": agencies.add(connection, Role.MISSION, "e2e mission", MISSION)[1],
            "ministry": agencies.add(connection, Role.MINISTRY, "e2e ministry", None)[1],
        }
    engine.dispose()
    season_opened(postgres_url)
    with serving(env, tmp_path / "serve.log") as [base]:
        yield base, keys, env


@pytest.mark.slow  # a soak: a server under writes for the length of a rebuild of every view
def test_a_rebuild_of_every_view_under_writes_is_never_seen_by_readers(
    server: tuple[str, dict[str, str], dict[str, str]],
) -> None:
    base, keys, env = server
    with (
        httpx.Client(base_url=base, headers={"Authorization": f"Bearer {keys['mission']}"}, timeout=30) as mission,
        httpx.Client(base_url=base, headers={"Authorization": f"Bearer {keys['ministry']}"}, timeout=30) as ministry,
    ):
        rebuild_under_load(mission, ministry, env)


def rebuild_under_load(mission: httpx.Client, ministry: httpx.Client, env: dict[str, str]) -> None:

    def write(count: int) -> int:
        commands = [registration_command("IDN") for _ in range(count)]
        answer = mission.post("/v1/commands:batch", json={"commands": commands})
        assert answer.status_code == 200, answer.text
        statuses = {r["status"] for r in answer.json()["results"]}
        assert statuses == {201}, answer.text
        written: list[int] = [r["outcome"]["position"] for r in answer.json()["results"]]
        return max(written)

    for _ in range(SEEDED):
        head = write(1000)
    caught_up = partial(answers, ministry, "/v1/summary", {"season": 1446, "min_position": head})
    eventually(caught_up, 300, "the views caught up with the seeded store")
    before = serving_generations(env)

    stop = threading.Event()
    written: list[float] = []
    write_failures: list[str] = []

    def writer() -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                write(BATCH)
                written.append(time.monotonic())
            except AssertionError as failed:
                write_failures.append(str(failed))
            time.sleep(max(0.0, EVERY - (time.monotonic() - started)))

    def page_reader(seen: Seen) -> None:
        while not stop.is_set():
            answer = ministry.get("/v1/views/journey_status", params={"season": 1446, "limit": 1})
            if answer.status_code != 200:
                seen.failures.append(f"{answer.status_code} {answer.text}")
            else:
                seen.positions.append(answer.json()["position"])

    def summary_reader(seen: Seen) -> None:
        while not stop.is_set():
            answer = ministry.get("/v1/summary", params={"season": 1446})
            if answer.status_code != 200:
                seen.failures.append(f"{answer.status_code} {answer.text}")
            else:
                seen.registered.append(registered(answer.json()))

    served: dict[str, list[int]] = {}

    def position_reader() -> None:  # what every read of a view is answered from: its serving generation's position
        engine = engine_for(env["HAJJ_LEDGER_DATABASE_URL"])
        query = sa.select(positions.c.projection, positions.c.position).where(positions.c.serving.is_(True))
        try:
            while not stop.is_set():
                with engine.connect() as connection:
                    for name, position in connection.execute(query):
                        served.setdefault(name, []).append(position)
        finally:
            engine.dispose()

    pages, summaries = Seen(), Seen()
    threads = [
        threading.Thread(target=position_reader),
        threading.Thread(target=writer),
        threading.Thread(target=page_reader, args=(pages,)),
        threading.Thread(target=summary_reader, args=(summaries,)),
    ]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1)  # the load under way before the rebuild starts
        writes_before = len(written)
        rebuilt = subprocess.run(
            [str(EXECUTABLE), "rebuild"], env=env, capture_output=True, text=True, timeout=600, check=False
        )
        writes_during = len(written) - writes_before
        time.sleep(1)  # and on after the swap
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    assert rebuilt.returncode == 0 and "swapped in" in rebuilt.stdout, rebuilt.stderr
    assert write_failures == [], write_failures[:3]
    assert writes_during >= 3, "the writes must go on while the views are rebuilt"
    after = serving_generations(env)
    assert all(after[name] != before[name] for name in before), (before, after)

    for seen in (pages, summaries):
        assert seen.failures == [], seen.failures[:3]
    assert len(pages.positions) > 10 and len(summaries.registered) > 10, "the readers must read throughout"
    older = {name: seen for name, seen in served.items() if seen != sorted(seen)}
    assert older == {}, f"a view was served older than before: {sorted(older)}"
    assert pages.positions == sorted(pages.positions), "a page came from a view older than one seen before"
    assert summaries.registered == sorted(summaries.registered), "a summary counted fewer than one seen before"
    assert summaries.registered[0] >= SEEDED * 1000

    last = write(1)
    eventually(partial(answers, ministry, "/v1/summary", {"season": 1446, "min_position": last}), 120, "caught up")
    final = ministry.get("/v1/summary", params={"season": 1446})
    assert registered(final.json()) == SEEDED * 1000 + BATCH * len(written) + 1, (
        "the rebuilt views, caught up, must count every registration once"
    )


def answers(client: httpx.Client, path: str, params: dict[str, Any]) -> bool:
    """Whether `path` answers 200; a 503 (the views not yet there) is waited out, anything else fails."""
    answer = client.get(path, params=params)
    assert answer.status_code in (200, 503), answer.text
    return answer.status_code == 200


def serving_generations(env: dict[str, str]) -> dict[str, str]:
    """The generation each projection serves from."""
    engine = engine_for(env["HAJJ_LEDGER_DATABASE_URL"])
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                sa.select(positions.c.projection, positions.c.generation).where(positions.c.serving.is_(True))
            )
            found = {name: generation for name, generation in rows}
    finally:
        engine.dispose()
    assert set(found) == {p.name for p in FOLLOWED}, found
    return found


def registered(summary: dict[str, Any]) -> int:
    """The journeys of the season that reached `registered`, from a summary's funnel."""
    return sum(stage["reached"] for stage in summary["funnel"] if stage["stage"] == "registered")
