"""The relay to NATS JetStream, against the real server (127.0.0.1:4222), on SQLite and PostgreSQL: the log in its
order on the right subjects, resumed with no gap and no repeat; `hajj-ledger publish` killed with SIGKILL mid-run
and started again; and a NATS server of the test's own killed with SIGKILL mid-run and started again. Each test has
a stream and a subject root of its own, deleted afterwards."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any
from uuid import uuid4

import orjson
import pytest

from hajj_ledger.following import Following
from hajj_ledger.ledger import JourneyLedger
from hajj_ledger.relay import POSITION, ROOT_VARIABLE, STREAM_VARIABLE, URL_VARIABLE, Relay, Target, token, trip_season
from hajj_ledger.store.connections import DATABASE_URL_VARIABLE
from tests.conftest import NATS_URL, needs_nats
from tests.support import EXECUTABLE, arrive_and_clear, eventually, free_port, schedule_trip

pytestmark = needs_nats
NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"  # Debian's, as on the machine's own server


@dataclass(frozen=True)
class Stored:
    sequence: int
    subject: str
    position: int
    body: dict[str, Any]


async def _stored(target: Target) -> list[Stored]:
    import nats
    from nats.js.api import AckPolicy, ConsumerConfig
    from nats.js.errors import NotFoundError

    connection = await nats.connect(target.url)
    try:
        stream = connection.jetstream()
        try:
            total = (await stream.stream_info(target.stream)).state.messages
        except NotFoundError:
            return []
        consumer = await stream.pull_subscribe(
            f"{target.root}.>", stream=target.stream, config=ConsumerConfig(ack_policy=AckPolicy.NONE)
        )
        found: list[Stored] = []
        while len(found) < total:
            for message in await consumer.fetch(min(1000, total - len(found)), timeout=10):
                found.append(
                    Stored(
                        message.metadata.sequence.stream, message.subject, int((message.headers or {})[POSITION]),
                        orjson.loads(message.data),
                    )
                )  # fmt: skip
        return found
    finally:
        await connection.close()


def stored(target: Target) -> list[Stored]:
    return asyncio.run(_stored(target))


async def _last_sequence(target: Target) -> int:
    import nats
    from nats.js.errors import NotFoundError

    connection = await nats.connect(target.url)
    try:
        return int((await connection.jetstream().stream_info(target.stream)).state.last_seq)
    except NotFoundError:
        return 0
    finally:
        await connection.close()


def _beyond(target: Target, sequence: int) -> bool:
    return asyncio.run(_last_sequence(target)) > sequence


async def _delete(target: Target) -> None:
    import nats
    from nats.js.errors import NotFoundError

    connection = await nats.connect(target.url)
    try:
        await connection.jetstream().delete_stream(target.stream)
    except NotFoundError:
        pass
    finally:
        await connection.close()


@pytest.fixture
def target() -> Iterator[Target]:
    mark = uuid4().hex[:12]
    found = Target(NATS_URL, f"TEST_{mark}", f"test{mark}")
    yield found
    asyncio.run(_delete(found))


def relay_to(ledger: JourneyLedger, target: Target) -> None:
    """The relay run until it has published the head of the log."""
    Relay(ledger, target).run(threading.Event(), until=ledger.head())


def publish_env(store_url: str, target: Target) -> dict[str, str]:
    """The environment of a `hajj-ledger publish` relaying the ledger at `store_url` to `target`."""
    return {
        **os.environ, DATABASE_URL_VARIABLE: store_url, URL_VARIABLE: target.url, STREAM_VARIABLE: target.stream,
        ROOT_VARIABLE: target.root,
    }  # fmt: skip


@dataclass
class OwnServer:
    """A NATS server of the test's own (a free port, its own storage), which the test may kill and start again."""

    command: list[str]
    target: Target
    process: subprocess.Popen[bytes] | None = None

    @classmethod
    def at(cls, tmp_path: Path, stream: str, *options: str) -> OwnServer:
        port = free_port()
        command = [NATS_SERVER, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(tmp_path / "jetstream")]
        return cls([*command, *options], Target(f"nats://127.0.0.1:{port}", stream, stream.lower()))

    def start(self) -> None:
        self.process = subprocess.Popen(self.command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def kill(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()


def log_of(ledger: JourneyLedger) -> list[tuple[int, str, bytes]]:
    """Every event of the log: position, subject's event name, the body the feed gives."""
    _, told = Following(ledger).read(0, 1_000_000)
    return [(t.position, t.event, t.body) for t in told]


def test_subject_tokens_are_escaped_reversibly() -> None:
    assert token("mission-IDN-00007") == "mission-IDN-00007"
    assert token("a.b c*>~é") == "a~2eb~20c~2a~3e~7e~c3~a9"
    assert token("a.b") != token("a~2eb")  # `~` is escaped too: no two ids share a token
    assert token("") == "~" and token("~") == "~7e"  # an empty id still makes a token, and no other id's


def test_a_trip_counts_in_the_season_whose_pilgrims_it_carries() -> None:
    from datetime import date

    assert trip_season(date(2025, 6, 5)) == 1446  # 9 Dhu al-Hijjah 1446, Arafat
    assert trip_season(date(2025, 5, 1)) == 1446  # Dhu al-Qa'dah 1446: arrivals
    assert trip_season(date(2025, 7, 20)) == 1446  # Muharram 1447: departures of 1446's pilgrims


def test_the_log_is_relayed_in_order_and_resumed_without_gap_or_repeat(ledger: JourneyLedger, target: Target) -> None:
    journeys = arrive_and_clear(ledger, 5)
    trip = schedule_trip(ledger)
    relay_to(ledger, target)
    first = stored(target)
    arrive_and_clear(ledger, 3)
    relay_to(ledger, target)
    relay_to(ledger, target)  # nothing new: nothing sent
    messages = stored(target)
    expected = log_of(ledger)
    assert messages[: len(first)] == first
    assert [m.sequence for m in messages] == list(range(1, len(expected) + 1))
    assert [m.position for m in messages] == [p for p, _, _ in expected]
    assert [m.body for m in messages] == [orjson.loads(b) for _, _, b in expected]
    registered = next(m for m in messages if m.subject.endswith(".Registered"))
    assert registered.subject == f"{target.root}.1446.mission.mission-IDN-1.Registered"
    # The market's events are in the offer's season; a building's, like a trip's, in the year of its day.
    published = next(m for m in messages if m.subject.endswith(".OfferPublished"))
    assert published.subject == f"{target.root}.1446.company.company-1.OfferPublished"
    proposed = next(m for m in messages if m.subject.endswith(".ContractProposed"))
    assert proposed.subject == f"{target.root}.1446.mission.mission-IDN-1.ContractProposed"
    licensed = next(m for m in messages if m.subject.endswith(".BuildingLicensed"))
    assert licensed.subject == f"{target.root}.1446.amanah.amanah-1.BuildingLicensed"
    assert registered.body["aggregate_id"] == str(journeys[0])
    scheduled = next(m for m in messages if m.body["aggregate_id"] == str(trip))
    assert scheduled.subject == f"{target.root}.1446.naqaba.naqaba-1.TripScheduled"
    received = [m for m in messages if m.subject.endswith(".ReceivedAtPort")]
    assert len(received) == 8 and all(m.subject.startswith(f"{target.root}.1446.wukala.wukala-1.") for m in received)


def test_publish_killed_mid_run_resumes_with_order_kept_and_nothing_twice(
    store_url: str, target: Target, tmp_path: Path
) -> None:
    ledger = JourneyLedger(store_url)
    try:
        for _ in range(3):
            arrive_and_clear(ledger, 1000)
        head = ledger.head()
        expected = [p for p, _, _ in log_of(ledger)]
    finally:
        ledger.close()
    env = publish_env(store_url, target)
    log = tmp_path / "publish.log"
    killed = 0
    for _ in range(2):  # killed twice, mid-run, then left to finish
        with log.open("a") as output:
            process = subprocess.Popen([str(EXECUTABLE), "publish"], env=env, stdout=output, stderr=subprocess.STDOUT)
        try:
            eventually(partial(_beyond, target, killed + 100), 60, "the relay publishing")
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
        killed = asyncio.run(_last_sequence(target))
        assert killed < head, "the relay finished before it was killed: make the log longer"
    with log.open("a") as output:
        process = subprocess.Popen([str(EXECUTABLE), "publish"], env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        eventually(partial(_beyond, target, len(expected) - 1), 120, "the relay done")
    finally:
        process.terminate()
        assert process.wait(20) == 0, log.read_text()
    messages = stored(target)
    assert [m.position for m in messages] == expected, log.read_text()
    assert [m.sequence for m in messages] == list(range(1, len(expected) + 1))


def test_of_two_publishers_one_relays_and_the_other_takes_over_when_it_is_killed(
    store_url: str, target: Target, tmp_path: Path
) -> None:
    ledger = JourneyLedger(store_url)
    env = publish_env(store_url, target)
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    publishers: list[subprocess.Popen[bytes]] = []
    try:
        arrive_and_clear(ledger, 300)
        for log in logs:
            with log.open("w") as output:
                publishers.append(
                    subprocess.Popen([str(EXECUTABLE), "publish"], env=env, stdout=output, stderr=subprocess.STDOUT)
                )
        eventually(partial(_beyond, target, len(log_of(ledger)) - 1), 60, "the log relayed")
        [leader] = [i for i, log in enumerate(logs) if "leading: running relay" in log.read_text()]
        publishers[leader].send_signal(signal.SIGKILL)
        publishers[leader].wait()
        arrive_and_clear(ledger, 100)  # recorded while no one relays, until the other takes over
        expected = [p for p, _, _ in log_of(ledger)]
        eventually(partial(_beyond, target, len(expected) - 1), 60, "the rest relayed by the other publisher")
        assert "leading: running relay" in logs[1 - leader].read_text()
        messages = stored(target)
        assert [m.position for m in messages] == expected
        assert [m.sequence for m in messages] == list(range(1, len(expected) + 1))
    finally:
        for process in publishers:
            process.terminate()
            process.wait(20)
        ledger.close()


def test_the_nats_server_killed_mid_run_and_started_again_leaves_every_position_once_in_order(
    store_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    nats_server = OwnServer.at(tmp_path, "KILLED")
    target = nats_server.target
    ledger = JourneyLedger(store_url)
    stop = threading.Event()
    relaying = threading.Thread(target=Relay(ledger, target).run, args=(stop, None))
    nats_server.start()
    try:
        for _ in range(3):
            arrive_and_clear(ledger, 1000)
        expected = [p for p, _, _ in log_of(ledger)]
        relaying.start()
        eventually(partial(_beyond, target, 100), 60, "the relay publishing")
        nats_server.kill()
        nats_server.start()
        eventually(partial(_beyond, target, len(expected) - 1), 120, "the relay done after the server came back")
        assert any("starting again" in record.message for record in caplog.records), (
            "the relay finished before the server was killed: make the log longer"
        )
        messages = stored(target)
        assert [m.position for m in messages] == expected
        assert [m.sequence for m in messages] == list(range(1, len(expected) + 1))
    finally:
        stop.set()
        if relaying.is_alive():
            relaying.join(30)
        nats_server.kill()
        ledger.close()


def test_an_event_over_the_server_s_max_payload_is_named_and_nothing_after_it_is_stored(
    ledger: JourneyLedger, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    arrive_and_clear(ledger, 3)
    bodies = [body for _, _, body in log_of(ledger)]
    largest = max(range(len(bodies)), key=lambda i: len(bodies[i]))
    assert 0 < largest < len(bodies) - 1, "the largest body must be neither the first nor the last"
    config = tmp_path / "nats.conf"
    config.write_text(f"max_payload: {len(bodies[largest]) - 1}\n")
    nats_server = OwnServer.at(tmp_path, "SMALL", "-c", str(config))
    target = nats_server.target
    stop = threading.Event()
    relaying = threading.Thread(target=Relay(ledger, target).run, args=(stop, ledger.head()))
    nats_server.start()
    try:
        eventually(partial(_answers, target), 30, "the NATS server")
        relaying.start()
        position = log_of(ledger)[largest][0]
        refusal = f"position {position}: {len(bodies[largest])} bytes, over the server's max_payload"
        eventually(lambda: any(refusal in record.message for record in caplog.records), 30, "the refusal logged")
        assert all(m.position < position for m in stored(target))  # no gap: nothing after it goes
    finally:
        stop.set()
        relaying.join(30)
        nats_server.kill()


def _answers(target: Target) -> bool:
    try:
        asyncio.run(_last_sequence(target))
    except Exception:
        return False
    return True
