"""`hajj-ledger nats-users` against the real `nats-server`, started by the test with the configuration the command
wrote: the relay publishes as its user; each agency's user reads, through its own consumers, exactly the events the
feed tells it of (`may_follow`), each once and in the log's order, and is refused every other agency's subjects,
consumers and inboxes, the stream's information, and publishing."""

from __future__ import annotations

import asyncio
import json
import stat
import threading
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from hajj_ledger.domain.access import may_follow
from hajj_ledger.domain.vocabulary import Role
from hajj_ledger.following import Following, Told
from hajj_ledger.ledger import JourneyLedger
from hajj_ledger.nats_users import AgencyUser, Filter
from hajj_ledger.relay import ROOT_VARIABLE, STREAM_VARIABLE, Relay, Target, token
from hajj_ledger.simulation.season import simulate
from tests.integration.test_relay import OwnServer, _answers
from tests.support import arrive_and_clear, eventually, run_cli

STREAM, ROOT = "HAJJ", "hajj"  # OwnServer's root is its stream's name in lower case
REFUSED = "permissions violation"  # as nats-py reports it, in lower case


@asynccontextmanager
async def connected(url: str, user: str, password: str, inbox: str = "_INBOX") -> Any:
    """A connection as `user`, and the errors the server sent it (a refusal ends no connection: it is reported)."""
    import nats

    errors: list[str] = []

    async def noted(error: Exception) -> None:
        errors.append(str(error))

    connection = await nats.connect(
        url, user=user, password=password, inbox_prefix=inbox, error_cb=noted, allow_reconnect=False
    )
    try:
        yield connection, errors
    finally:
        await connection.close()


async def _read(url: str, agency: AgencyUser, password: str) -> list[tuple[int, int, str]]:
    """What the agency's user reads through its consumers: each message's stream sequence, position and event."""
    async with connected(url, agency.agency_id, password, agency.inbox) as (connection, errors):
        stream = connection.jetstream()
        found = []
        for consumer in agency.filters(ROOT):
            subscription = await stream.pull_subscribe(consumer.subjects, durable=consumer.consumer, stream=STREAM)
            pending = (await subscription.consumer_info()).num_pending
            while pending:
                for message in await subscription.fetch(min(pending, 500), timeout=10):
                    event = json.loads(message.data)
                    found.append((message.metadata.sequence.stream, event["position"], event["event"]))
                    await message.ack()
                    pending -= 1
        assert not errors, errors
    return sorted(found)


def creating(consumer: Filter, reading: Filter | None = None) -> dict[str, Any]:
    """A request to create `consumer` reading `reading`'s subjects (its own by default)."""
    config = {
        "name": consumer.consumer,
        "durable_name": consumer.consumer,
        "filter_subject": (reading or consumer).subjects,
    }
    return {"stream_name": STREAM, "config": config}


async def _refusals(url: str, agency: AgencyUser, password: str, other: AgencyUser) -> None:
    """What the server reports of the agency's user trying the other's subjects and everything else it may not."""
    own, theirs = agency.filters(ROOT)[0], other.filters(ROOT)[0]
    async with connected(url, agency.agency_id, password, agency.inbox) as (connection, errors):
        for subject in (theirs.subjects, f"{ROOT}.>", "_INBOX.>", f"{other.inbox}.>", ">"):
            await connection.subscribe(subject)
        asking = {
            f"$JS.API.CONSUMER.CREATE.{STREAM}.{theirs.consumer}.{theirs.subjects}": creating(theirs),
            f"$JS.API.CONSUMER.CREATE.{STREAM}.{own.consumer}.{theirs.subjects}": creating(own, theirs),
            f"$JS.API.CONSUMER.CREATE.{STREAM}.{own.consumer}": creating(own, theirs),
            f"$JS.API.CONSUMER.DURABLE.CREATE.{STREAM}.{own.consumer}": creating(own, theirs),
            f"$JS.API.CONSUMER.MSG.NEXT.{STREAM}.{theirs.consumer}": {"batch": 1},
            f"$JS.API.CONSUMER.INFO.{STREAM}.{theirs.consumer}": {},
            f"$JS.API.CONSUMER.LIST.{STREAM}": {},
            f"$JS.API.STREAM.INFO.{STREAM}": {"subjects_filter": ">"},
            f"$JS.API.STREAM.MSG.GET.{STREAM}": {"seq": 1},
            f"$JS.API.DIRECT.GET.{STREAM}": {"seq": 1},
        }
        for subject, body in asking.items():
            with pytest.raises(asyncio.TimeoutError):  # refused: the request goes nowhere
                await connection.request(subject, json.dumps(body).encode(), 0.5)
        # The create request with its own name and filter in the subject, and another filter in the body: the server
        # checks the two agree.
        answer = await connection.request(
            f"$JS.API.CONSUMER.CREATE.{STREAM}.{own.consumer}.{own.subjects}",
            json.dumps(creating(own, theirs)).encode(),
            5,
        )
        assert "error" in json.loads(answer.data), answer.data
        forged = f"{ROOT}.1446.{agency.role}.{token(agency.agency_id)}.Registered"
        await connection.publish(forged, b"{}")
        await connection.flush()
        await asyncio.sleep(0.2)  # the last refusal reported
        refused = [*asking, theirs.subjects, f"{ROOT}.>", "_INBOX.>", f"{other.inbox}.>", ">", forged]
        missing = [s for s in refused if not any(REFUSED in e and f'"{s.lower()}"' in e for e in errors)]
        assert not missing, (missing, errors)


async def _last_sequence(url: str, password: str) -> int:
    async with connected(url, "relay", password) as (connection, _):
        return int((await connection.jetstream().stream_info(STREAM)).state.last_seq)


def _owners(told: list[Told], column: str) -> list[str]:
    return sorted({owner for t in told if t.owners and (owner := t.owners.get(column))})


def _audience(told: list[Told], agency: AgencyUser) -> list[tuple[int, str]]:
    return [(t.position, t.event) for t in told if may_follow(agency.role, agency.agency_id, t.event, t.owners)]


@pytest.fixture
def season(ledger: JourneyLedger) -> tuple[JourneyLedger, list[Told]]:
    simulate(ledger, 10, 1446, seed=4)
    return ledger, Following(ledger).read(0, 1_000_000)[1]


def test_each_agency_s_user_reads_exactly_its_events_and_only_the_relay_publishes(
    season: tuple[JourneyLedger, list[Told]], tmp_path: Path
) -> None:
    ledger, told = season
    missions, companies = _owners(told, "mission_id"), _owners(told, "company_id")
    assert len(missions) >= 2 and companies, (missions, companies)
    agencies = [
        AgencyUser(missions[0], Role.MISSION), AgencyUser(missions[1], Role.MISSION),
        AgencyUser(companies[0], Role.COMPANY), AgencyUser("ministry-hajj", Role.MINISTRY),
        AgencyUser("mofa-visas", Role.MOFA), AgencyUser("naqaba-cars", Role.NAQABA),
        AgencyUser("auditor-diwan", Role.AUDITOR),
    ]  # fmt: skip
    config, credentials = tmp_path / "users.conf", tmp_path / "credentials.json"
    ran = run_cli(
        "nats-users", *(f"--agency={a.role}:{a.agency_id}" for a in agencies), "--agency=analyst:analyst-stats",
        "--config", str(config), "--credentials", str(credentials), env={STREAM_VARIABLE: STREAM, ROOT_VARIABLE: ROOT},
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    passwords = json.loads(credentials.read_text())["passwords"]
    assert set(passwords) == {"relay", *(a.agency_id for a in agencies)}  # the analyst is told of nothing
    assert "no user for analyst analyst-stats" in ran.stdout
    assert not any(password in ran.stdout + ran.stderr for password in passwords.values())
    assert stat.S_IMODE(config.stat().st_mode) == stat.S_IMODE(credentials.stat().st_mode) == 0o600

    nats_server = OwnServer.at(tmp_path, STREAM, "-c", str(config))
    url = nats_server.target.url
    nats_server.start()
    try:
        relay_url = url.replace("nats://", f"nats://relay:{passwords['relay']}@")
        eventually(lambda: _answers(Target(relay_url, STREAM, ROOT)), 30, "the NATS server")
        Relay(ledger, Target(relay_url, STREAM, ROOT)).run(threading.Event(), until=ledger.head())
        published = asyncio.run(_last_sequence(url, passwords["relay"]))
        assert published > len(told)  # the relay, as its user, published every event once for each audience
        for agency in agencies:
            read = asyncio.run(_read(url, agency, passwords[agency.agency_id]))
            assert [(position, event) for _, position, event in read] == _audience(told, agency), agency
            assert read, agency
        # The ministry and the auditors share the log's messages, which no other agency may read.
        ministry, mofa, auditor = agencies[3], agencies[4], agencies[6]
        assert ministry.filters(ROOT)[0].subjects == auditor.filters(ROOT)[0].subjects == f"{ROOT}.*.log.all.>"
        pairs = [(agencies[0], agencies[1]), (ministry, agencies[2]), (agencies[2], agencies[0]), (mofa, ministry)]
        for agency, other in [*pairs, (agencies[0], auditor), (auditor, mofa)]:
            asyncio.run(_refusals(url, agency, passwords[agency.agency_id], other))
        assert asyncio.run(_last_sequence(url, passwords["relay"])) == published  # no agency published
        # The relay, as its user, resumes after the stream's last message (which it reads) with what came since.
        arrive_and_clear(ledger, 2)
        since = Following(ledger).read(told[-1].position, 1_000_000)[1]
        stop = threading.Event()
        relaying = threading.Thread(target=Relay(ledger, Target(relay_url, STREAM, ROOT)).run, args=(stop, None))
        relaying.start()
        try:
            more = sum(len(Target(url, STREAM, ROOT).subjects(t)) for t in since)
            eventually(lambda: asyncio.run(_last_sequence(url, passwords["relay"])) == published + more, 30, "resumed")
        finally:
            stop.set()
            relaying.join(30)
    finally:
        nats_server.kill()


def test_users_keep_their_passwords_and_the_registry_s_active_agencies_get_one(store_url: str, tmp_path: Path) -> None:
    from hajj_ledger.api import agencies
    from hajj_ledger.migrations import upgrade
    from hajj_ledger.projections.schema import engine_for

    engine = engine_for(store_url)
    try:
        upgrade(engine)
        with engine.begin() as connection:  # as `hajj-ledger agency add` and `revoke` do
            agencies.add(connection, Role.MISSION, "Indonesia", "mission-IDN-00007")
            agencies.add(connection, Role.MOFA, "Visas")
            agencies.revoke(connection, "mofa-visas")
    finally:
        engine.dispose()
    env = {"HAJJ_LEDGER_DATABASE_URL": store_url}
    config, credentials = tmp_path / "users.conf", tmp_path / "credentials.json"
    files = ["--config", str(config), "--credentials", str(credentials)]
    assert run_cli("nats-users", "--registry", *files, env=env).returncode == 0
    first = json.loads(credentials.read_text())["passwords"]
    assert set(first) == {"relay", "mission-IDN-00007"}  # a revoked agency gets no user
    assert run_cli("nats-users", "--registry", "--agency", "ministry:ministry-hajj", *files, env=env).returncode == 0
    second = json.loads(credentials.read_text())["passwords"]
    assert {name: second[name] for name in first} == first and set(second) == {*first, "ministry-hajj"}
    assert '"user": "ministry-hajj"' in config.read_text()


@pytest.mark.parametrize(
    ("arguments", "reason"),
    [
        ([], "give agencies (--agency ROLE:ID, repeated) or --registry"),
        (["--agency", "mission-IDN-1"], "give ROLE:AGENCY_ID"),
        (["--agency", "pilot:p-1"], "no role 'pilot'"),
        (["--agency", "company:relay"], "'relay' is the relay's user"),
        (["--agency", "mofa:mofa-1", "--agency", "mofa:mofa-1"], "an agency is given twice"),
    ],
)
def test_a_bad_agency_is_refused_naming_it_and_nothing_is_written(
    arguments: list[str], reason: str, tmp_path: Path
) -> None:
    ran = run_cli("nats-users", *arguments, "--config", str(tmp_path / "c"), "--credentials", str(tmp_path / "p"))
    assert ran.returncode == 1 and '"agency"' in ran.stderr and reason in ran.stderr, ran.stderr
    assert not list(tmp_path.iterdir())
