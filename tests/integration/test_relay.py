"""The relay to NATS JetStream, against the real server (127.0.0.1:4222), on SQLite and PostgreSQL: the log in its
order, each event on the subject of each of its audiences (those the feed tells of it), resumed with no gap and no
repeat, also from an event half published; `hajj-ledger publish` killed with SIGKILL mid-run
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

from hajj_ledger.domain.access import FEED_EVENTS, may_follow
from hajj_ledger.domain.catalogue import EVENT_SCOPES
from hajj_ledger.domain.vocabulary import Role
from hajj_ledger.following import Following
from hajj_ledger.ledger import JourneyLedger
from hajj_ledger.relay import (
    EXPECTED,
    LOG,
    LOG_READERS,
    POSITION,
    ROOT_VARIABLE,
    STREAM_VARIABLE,
    URL_VARIABLE,
    Relay,
    Target,
    audience,
    token,
    trip_season,
)
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
    rank: int  # its audience's among the event's
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
                position, rank = (message.headers or {})[POSITION].split(".")
                found.append(
                    Stored(
                        message.metadata.sequence.stream, message.subject, int(position), int(rank),
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


def messages_of(ledger: JourneyLedger, target: Target) -> list[tuple[int, int, str, bytes]]:
    """Every message the log makes: its event's position, its audience's rank, its subject, its body."""
    _, told = Following(ledger).read(0, 1_000_000)
    return [(t.position, rank, s.decode(), t.body) for t in told for rank, s in enumerate(target.subjects(t))]


def positions_of(ledger: JourneyLedger, target: Target) -> list[int]:
    """The position of every message the log makes, in their order."""
    return [position for position, _, _, _ in messages_of(ledger, target)]


def test_subject_tokens_are_escaped_reversibly() -> None:
    assert token("mission-IDN-00007") == "mission-IDN-00007"
    assert token("a.b c*>~é") == "a~2eb~20c~2a~3e~7e~c3~a9"
    assert token("a.b") != token("a~2eb")  # `~` is escaped too: no two ids share a token
    assert token("") == "~" and token("~") == "~7e"  # an empty id still makes a token, and no other id's
    assert token("all") == "~61ll" and token("~61ll") == "~7e61ll"  # `all` is every agency of a role, no agency's


def test_only_roles_told_of_the_same_events_unscoped_share_an_audience() -> None:
    assert {Role.MINISTRY, Role.AUDITOR} == LOG_READERS and LOG not in set(Role)
    for role in Role:
        sharing = [other for other in Role if other != role and audience(other) == audience(role)]
        for other in sharing:  # what one may read, the other is told of: each event, of every agency
            assert FEED_EVENTS[other] == FEED_EVENTS[role], (role, other)
            assert not any(role in scopes or other in scopes for scopes in EVENT_SCOPES.values()), (role, other)
    assert {audience(role) for role in Role} == {role.value for role in Role} - {"ministry", "auditor"} | {LOG}


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
    expected = messages_of(ledger, target)
    assert messages[: len(first)] == first
    assert [m.sequence for m in messages] == list(range(1, len(expected) + 1))
    assert [(m.position, m.rank, m.subject) for m in messages] == [(p, r, s) for p, r, s, _ in expected]
    assert [m.body for m in messages] == [orjson.loads(b) for _, _, _, b in expected]
    assert {m.position for m in messages} == {p for p, _, _ in log_of(ledger)}

    def subjects(event: str, aggregate_id: str | None = None) -> list[str]:
        """The subjects of the first such event (of that aggregate), the root left out."""
        found = [m for m in messages if m.body["event"] == event and aggregate_id in (None, m.body["aggregate_id"])]
        return [m.subject.removeprefix(f"{target.root}.") for m in found if m.position == found[0].position]

    # A journey's events go to its mission, and to its company from the contract on; a role told of every such
    # event hears it on `all`. The market's events are in the offer's season; a building's, like a trip's, in the
    # year of its day.
    # The ministry and the auditors, told of every event, share one message an event, the log's.
    assert subjects("Registered", str(journeys[0])) == [
        "1446.mission.mission-IDN-1.Registered", "1446.log.all.Registered",
    ]  # fmt: skip
    assert subjects("VisaIssued") == [
        "1446.mission.mission-IDN-1.VisaIssued", "1446.company.company-1.VisaIssued", "1446.mofa.all.VisaIssued",
        "1446.jawazat.all.VisaIssued", "1446.log.all.VisaIssued",
    ]  # fmt: skip
    assert subjects("OfferPublished") == [  # the market is open to every mission
        "1446.mission.all.OfferPublished", "1446.company.company-1.OfferPublished", "1446.log.all.OfferPublished",
    ]  # fmt: skip
    assert subjects("ContractProposed") == [
        "1446.mission.mission-IDN-1.ContractProposed", "1446.company.company-1.ContractProposed",
        "1446.log.all.ContractProposed",
    ]  # fmt: skip
    assert subjects("BuildingLicensed") == [
        "1446.company.company-1.BuildingLicensed", "1446.log.all.BuildingLicensed", "1446.amanah.all.BuildingLicensed",
    ]  # fmt: skip
    assert subjects("TripScheduled", str(trip)) == [
        "1446.wukala.all.TripScheduled", "1446.naqaba.all.TripScheduled", "1446.log.all.TripScheduled",
    ]  # fmt: skip
    received = [m for m in messages if m.subject.endswith(".ReceivedAtPort")]
    assert len(received) == 8 * 8 and len({(m.position, m.subject) for m in received}) == 8 * 8
    assert {m.subject.split(".")[2] for m in received} == {
        "mission", "company", "gaca", "jawazat", "customs", "wukala", "naqaba", "log",
    }  # fmt: skip


def test_each_event_goes_to_exactly_the_agencies_the_feed_tells_of_it_once(
    ledger: JourneyLedger, target: Target
) -> None:
    arrive_and_clear(ledger, 3)
    schedule_trip(ledger)
    _, told = Following(ledger).read(0, 1_000_000)
    for event in told:
        subjects = [s.decode().split(".") for s in target.subjects(event)]
        assert len({(role, agency) for _, _, role, agency, _ in subjects}) == len(subjects), event  # once each
        owners = [owner for owner in (event.owners or {}).values() if owner is not None]
        # A journey's events, and the season's own, are of 1446; a trip's of the year of its day.
        season = subjects[0][1] if subjects else "1446"
        if event.event.startswith("Season"):
            assert season == "1446", event
        for role in Role:
            for agency in [*owners, "mission-EGY-9", "company-9", f"{role}-9"]:
                published = [target.root, season, audience(role), token(agency), event.event] in subjects or [
                    target.root, season, audience(role), "all", event.event,
                ] in subjects  # fmt: skip
                assert published == may_follow(role, agency, event.event, event.owners), (event, role, agency)


def test_an_event_half_published_when_the_relay_stopped_is_finished_first(
    ledger: JourneyLedger, target: Target
) -> None:
    arrive_and_clear(ledger, 2)
    expected = messages_of(ledger, target)
    # The relay stopped after the first two of a ReceivedAtPort's nine messages.
    cut = next(i for i, (_, _, subject, _) in enumerate(expected) if subject.endswith(".ReceivedAtPort")) + 2
    asyncio.run(_publish_as_the_relay(target, expected[:cut]))
    relay_to(ledger, target)
    messages = stored(target)
    assert [(m.position, m.rank, m.subject) for m in messages] == [(p, r, s) for p, r, s, _ in expected]
    assert [m.sequence for m in messages] == list(range(1, len(expected) + 1))


async def _publish_as_the_relay(target: Target, messages: list[tuple[int, int, str, bytes]]) -> None:
    import nats
    from nats.js.api import StorageType, StreamConfig

    connection = await nats.connect(target.url)
    try:
        stream = connection.jetstream()
        await stream.add_stream(
            StreamConfig(name=target.stream, subjects=[f"{target.root}.>"], storage=StorageType.FILE)
        )
        for sequence, (position, rank, subject, body) in enumerate(messages):
            headers = {POSITION: f"{position}.{rank}", EXPECTED: str(sequence)}
            await stream.publish(subject, body, stream=target.stream, headers=headers)
    finally:
        await connection.close()


def test_publish_killed_mid_run_resumes_with_order_kept_and_nothing_twice(
    store_url: str, target: Target, tmp_path: Path
) -> None:
    ledger = JourneyLedger(store_url)
    try:
        for _ in range(3):
            arrive_and_clear(ledger, 1000)
        expected = positions_of(ledger, target)
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
        assert killed < len(expected), "the relay finished before it was killed: make the log longer"
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
        eventually(partial(_beyond, target, len(positions_of(ledger, target)) - 1), 60, "the log relayed")
        [leader] = [i for i, log in enumerate(logs) if "leading: running relay" in log.read_text()]
        publishers[leader].send_signal(signal.SIGKILL)
        publishers[leader].wait()
        arrive_and_clear(ledger, 100)  # recorded while no one relays, until the other takes over
        expected = positions_of(ledger, target)
        eventually(partial(_beyond, target, len(expected) - 1), 60, "the rest relayed by the other publisher")
        assert "leading: running relay" in logs[1 - leader].read_text()
        _once_in_order(target, expected)
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
        expected = positions_of(ledger, target)
        relaying.start()
        eventually(partial(_beyond, target, 100), 60, "the relay publishing")
        nats_server.kill()
        nats_server.start()
        eventually(partial(_beyond, target, len(expected) - 1), 120, "the relay done after the server came back")
        assert any("starting again" in record.message for record in caplog.records), (
            "the relay finished before the server was killed: make the log longer"
        )
        _once_in_order(target, expected)
    finally:
        stop.set()
        if relaying.is_alive():
            relaying.join(30)
        nats_server.kill()
        ledger.close()


def test_the_database_lost_mid_run_leaves_every_position_once_in_order(
    postgres_url: str, target: Target, caplog: pytest.LogCaptureFixture
) -> None:
    """The primary lost (every connection cut, none taken) while the relay publishes, events recorded meanwhile
    elsewhere, then the database reached again: the relay goes on from its position, with no gap and no repeat."""
    from hajj_ledger.store.connections import Postgres
    from tests.tcp_proxy import Proxy

    proxy = Proxy(Postgres.from_url(postgres_url).hosts[0][1])
    ledger = JourneyLedger(postgres_url)
    relayed = JourneyLedger(f"postgresql://postgres@127.0.0.1:{proxy.port}/{postgres_url.rsplit('/', 1)[1]}")
    stop = threading.Event()
    relaying = threading.Thread(target=Relay(relayed, target).run, args=(stop, None))
    try:
        for _ in range(3):
            arrive_and_clear(ledger, 1000)
        relaying.start()
        eventually(partial(_beyond, target, 100), 60, "the relay publishing")
        proxy.down()
        arrive_and_clear(ledger, 10)  # recorded while the relay cannot read the log
        eventually(lambda: any("starting again" in r.message for r in caplog.records), 30, "the relay failed")
        proxy.up()
        expected = positions_of(ledger, target)
        eventually(partial(_beyond, target, len(expected) - 1), 120, "the relay done after the database came back")
        _once_in_order(target, expected)
    finally:
        stop.set()
        if relaying.is_alive():
            relaying.join(30)
        proxy.close()
        relayed.close()
        ledger.close()


def _once_in_order(target: Target, expected: list[int]) -> None:
    """The stream holds a message for every position expected, in order, each once."""
    messages = stored(target)
    assert [m.position for m in messages] == expected
    assert [m.sequence for m in messages] == list(range(1, len(expected) + 1))


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
