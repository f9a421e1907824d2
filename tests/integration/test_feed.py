"""The change feed over HTTP, through a real server (uvicorn) on SQLite and PostgreSQL: who is told of what, resuming
with no gap and no repeat (and changing nothing live clients are told, on two nodes), a client that falls behind,
heartbeats, a revoked key."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from typing import Any
from unittest.mock import ANY
from uuid import UUID

import httpx
import orjson
import pytest
import sqlalchemy as sa
import uvicorn
from fastapi import FastAPI

from hajj_ledger.api import agencies, feed
from hajj_ledger.api.app import create_app
from hajj_ledger.api.feed import BUFFER_VARIABLE, HEARTBEAT_VARIABLE, OPENING
from hajj_ledger.domain.access import FEED_EVENTS, may_follow
from hajj_ledger.domain.vocabulary import Role
from hajj_ledger.following import Following, Told
from hajj_ledger.ledger import JourneyLedger
from hajj_ledger.migrations import upgrade
from hajj_ledger.projections import FOLLOWED
from hajj_ledger.projections.runner import Runner
from hajj_ledger.projections.schema import engine_for
from tests.support import NAMES, T0, as_json, building_fields, eventually, offer_fields, registration, season_opened

EGY, PAK, COMPANY, COMPANY_2 = "mission-EGY-1", "mission-PAK-2", "company-1", "company-2"
HEARTBEAT = 0.2


@dataclass
class Server:
    base: str
    url: str
    keys: dict[str, str]
    app: FastAPI
    loop: asyncio.AbstractEventLoop  # the server's
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=30))
    contracts: dict[tuple[str, str], UUID] = field(default_factory=dict)

    def post(self, who: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        answer = self.http.post(f"{self.base}{path}", json=body, headers={"Authorization": f"Bearer {self.keys[who]}"})
        assert answer.status_code in (200, 201), answer.text
        found: dict[str, Any] = answer.json()
        return found

    def created(self, who: str, path: str, **fields: Any) -> UUID:
        return UUID(self.post(who, path, as_json({"occurred_at": T0, **fields}))["aggregate_id"])

    def market(self, mission: str = EGY, company: str = COMPANY) -> dict[str, UUID]:
        """Over HTTP: a building of the company licensed and inspected, its offer naming it, and the mission's
        contract on the offer, signed (made once a mission and company)."""
        building = self.created("amanah", "/v1/buildings", **building_fields(50, company_id=company))
        self.created("civil_defence", f"/v1/buildings/{building}/inspection-passed", findings="compliant")
        offer = self.created(company, "/v1/offers", **offer_fields(50, [building]))
        contract = self.created(mission, "/v1/contracts", offer_id=offer, places=50)
        self.created(company, f"/v1/contracts/{contract}/sign")
        self.contracts[mission, company] = contract
        return {"building": building, "offer": offer, "contract": contract}

    def contract_of(self, mission: str = EGY, company: str = COMPANY) -> UUID:
        if (mission, company) not in self.contracts:
            self.market(mission, company)
        return self.contracts[mission, company]

    def register(self, who: str = EGY, **fields: Any) -> UUID:
        country = "PAK" if who == PAK else "EGY"
        return UUID(self.post(who, "/v1/journeys", registration(country, **fields))["aggregate_id"])

    def step(self, who: str, journey: UUID, slug: str, **fields: Any) -> int:
        body = {"occurred_at": T0.isoformat(), **fields}
        position: int = self.post(who, f"/v1/journeys/{journey}/{slug}", body)["position"]
        return position

    def positions(self) -> list[int]:
        ledger = JourneyLedger(self.url, create_tables=False)
        try:
            return [n.id for n in ledger.recorder.select_notifications(start=1, limit=100_000)]
        finally:
            ledger.close()


@pytest.fixture
def server(store_url: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[Server]:
    monkeypatch.setenv(HEARTBEAT_VARIABLE, str(HEARTBEAT))
    monkeypatch.setenv(BUFFER_VARIABLE, str(getattr(request, "param", 40)))  # events a client's buffer holds
    engine = engine_for(store_url)
    upgrade(engine)
    keys: dict[str, str] = {}
    with engine.begin() as connection:
        for role in Role:
            _, keys[str(role)] = agencies.add(
                connection, role, f"the {role}", {Role.MISSION: EGY, Role.COMPANY: COMPANY}.get(role)
            )
        keys[EGY] = keys["mission"]
        keys[COMPANY] = keys["company"]
        _, keys[PAK] = agencies.add(connection, Role.MISSION, "Pakistan's mission", PAK)
        _, keys[COMPANY_2] = agencies.add(connection, Role.COMPANY, "the second company", COMPANY_2)
    engine.dispose()
    with serving(season_opened(store_url), keys) as found:
        yield found


@contextmanager
def serving(store_url: str, keys: dict[str, str]) -> Iterator[Server]:
    """A node of the API on the store, served by uvicorn in a thread."""
    app = create_app(store_url)
    uvicorn_server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", timeout_graceful_shutdown=2)
    )
    running = threading.Thread(target=uvicorn_server.run)
    running.start()
    try:
        eventually(lambda: uvicorn_server.started, 30, "the server started")
        listening = uvicorn_server.servers[0]
        port = listening.sockets[0].getsockname()[1]
        found = Server(f"http://127.0.0.1:{port}", store_url, keys, app, listening.get_loop())
        yield found
        found.http.close()
    finally:
        uvicorn_server.should_exit = True
        running.join()


@dataclass
class Message:
    id: int | None  # None: a message that is no event of the log (`revoked`)
    event: str
    data: dict[str, Any]


class Client:
    """A client of the feed, reading its stream in a thread of its own; answered once it has the status line and the
    stream's first line (from then on, it is told of whatever is recorded)."""

    def __init__(self, server: Server, who: str, headers: dict[str, str] | None = None, **params: Any) -> None:
        self.messages: list[Message] = []
        self.problem: dict[str, Any] = {}
        self.comments: list[str] = []
        self.status = 0
        self.ended = False  # the server ended the stream
        self.stopping = False
        self.answered = threading.Event()
        headers = {"Authorization": f"Bearer {server.keys[who]}", **(headers or {})}
        self.thread = threading.Thread(target=self._read, args=(f"{server.base}/v1/feed", headers, params))
        self.thread.start()
        assert self.answered.wait(10), "the feed did not answer"

    def _read(self, url: str, headers: dict[str, str], params: dict[str, Any]) -> None:
        try:
            with httpx.stream("GET", url, headers=headers, params=params, timeout=30) as response:
                if response.status_code != 200:
                    response.read()
                    self.problem = response.json()
                    self.status = response.status_code
                    return
                self.status = response.status_code
                fields: dict[str, str] = {}
                for line in response.iter_lines():
                    self.answered.set()
                    if self.stopping:
                        return
                    if line.startswith(":"):
                        self.comments.append(line)
                    elif line:
                        name, _, value = line.partition(": ")
                        fields[name] = value
                    elif fields:
                        position = int(fields["id"]) if "id" in fields else None
                        self.messages.append(Message(position, fields["event"], orjson.loads(fields["data"])))
                        fields = {}
                self.ended = True
        finally:
            self.answered.set()

    def close(self) -> None:
        self.stopping = True
        self.thread.join(10)
        assert not self.thread.is_alive()

    def ids(self) -> list[int]:
        return [m.id for m in self.messages if m.id is not None]

    def has(self, count: int) -> bool:
        return len(self.messages) >= count


def _journey_to_hospital(server: Server) -> tuple[UUID, list[int]]:
    """A journey of EGY's, contracted to the company, through the port to the hospital: its positions."""
    contract = server.contract_of(EGY, COMPANY)
    journey = server.register(EGY, identity=NAMES)
    positions = [
        server.step(EGY, journey, "package-contracted", contract_id=str(contract), package_id="PKG-1"),
        server.step(EGY, journey, "visa-requested"),
        server.step("mofa", journey, "visa-issued", valid_until=(T0 + timedelta(days=90)).isoformat()),
        server.step("gaca", journey, "arrived-at-port", port="JED-HAJJ", mode="air", flight="SV1"),
        server.step("jawazat", journey, "entry-cleared", port="JED-HAJJ"),
        server.step("customs", journey, "customs-cleared", port="JED-HAJJ"),
        server.step("wukala", journey, "received-at-port", port="JED-HAJJ"),
        server.step("moh", journey, "hospital-admitted", facility="JED-KFH"),
    ]
    return journey, positions


def test_each_agency_is_told_of_its_own_events_only(server: Server) -> None:
    who = (EGY, PAK, COMPANY, "naqaba", "moh", "ministry", "mofa")
    contract = server.contract_of(EGY, COMPANY)  # the market before (its agencies: the test after this one)
    start = server.positions()
    clients = {name: Client(server, name, after=start[-1]) for name in who}
    try:
        journey, steps = _journey_to_hospital(server)
        other = server.register(PAK)
        trip = server.post("naqaba", "/v1/trips", {
            "occurred_at": T0.isoformat(), "trip_id": "00000000-0000-4000-8000-0000000000aa", "operator": "SAPTCO",
            "bus_plate": "KSA-1", "origin": "JED-HAJJ", "destination": "makkah", "departs_at": T0.isoformat(),
            "capacity": 49,
        })  # fmt: skip
        everything = server.positions()[len(start) :]
        eventually(lambda: clients["ministry"].has(len(everything)), 10, "the ministry told of every event")
        time.sleep(3 * HEARTBEAT)  # what the others would be told has come by now
    finally:
        for client in clients.values():
            client.close()
    told = {name: [(m.event, UUID(m.data["aggregate_id"])) for m in c.messages] for name, c in clients.items()}
    assert clients["ministry"].ids() == everything  # ids are positions, in log order
    registered = ("Registered", journey)
    of_journey = [e for e in told["ministry"] if e[1] == journey]
    assert len(of_journey) == 9 and of_journey[0] == registered
    # The mission of its journey and of its contract, whose place the journey took.
    assert told[EGY] == [e for e in told["ministry"] if e[1] in (journey, contract)]
    assert told[EGY][:3] == [registered, ("PlaceTaken", contract), ("PackageContracted", journey)]
    assert told[PAK] == [("Registered", other)]
    # The company from the contract on: the journey was not its before.
    assert [e for e, _ in told[COMPANY]] == [e for e, _ in told[EGY][1:]]
    assert told["naqaba"] == [("ReceivedAtPort", journey), ("TripScheduled", UUID(trip["aggregate_id"]))]
    assert told["moh"] == [("HospitalAdmitted", journey)]
    assert [e for e, _ in told["mofa"]] == ["VisaRequested", "VisaIssued"]
    first = clients[EGY].messages[0].data
    assert first["position"] == clients[EGY].ids()[0] and first["agency_id"] == EGY and first["role"] == "mission"
    assert first["fields"]["country"] == "EGY" and first["occurred_at"] and first["recorded_at"]
    for client in clients.values():  # pseudonymous: nothing of the identity the registration carried
        text = orjson.dumps([m.data for m in client.messages]).decode()
        assert not any(
            NAMES[name] in text for name in ("name_arabic", "name_latin", "passport_number", "date_of_birth")
        )
    assert [m.id for m in clients[EGY].messages if m.data["aggregate_id"] == str(journey)][1:] == steps


def test_the_market_s_agencies_are_told_of_their_own_events_only(server: Server) -> None:
    """The municipality of licensing, Civil Defence of inspections, road security of trips on the road; a company
    of its own buildings, offers and contracts; a mission of its own contracts and of every company's offers."""
    who = (EGY, PAK, COMPANY, COMPANY_2, "amanah", "civil_defence", "road_security", "naqaba", "ministry")
    clients = {name: Client(server, name, after=0) for name in who}
    try:
        first = server.market(EGY, COMPANY)
        second = server.market(PAK, COMPANY_2)
        trip = server.created("naqaba", "/v1/trips", operator="SAPTCO", bus_plate="KSA-1", origin="JED-HAJJ",
                              destination="makkah", departs_at=T0, capacity=49)  # fmt: skip
        server.created("naqaba", f"/v1/trips/{trip}/trip-departed")
        server.created("road_security", f"/v1/trips/{trip}/checkpoint-passed", checkpoint="Hijrah road km 60")
        server.created("naqaba", f"/v1/trips/{trip}/trip-arrived")
        everything = server.positions()
        eventually(lambda: clients["ministry"].has(len(everything)), 10, "the ministry told of every event")
        time.sleep(3 * HEARTBEAT)
    finally:
        for client in clients.values():
            client.close()
    told = {name: {(m.event, UUID(m.data["aggregate_id"])) for m in c.messages} for name, c in clients.items()}
    assert clients["ministry"].ids() == everything
    for client in clients.values():
        assert client.ids() == sorted(client.ids())

    def market_of(market: dict[str, UUID]) -> set[tuple[str, UUID]]:
        building, offer, contract = market["building"], market["offer"], market["contract"]
        return {
            ("BuildingLicensed", building), ("InspectionPassed", building), ("OfferPublished", offer),
            ("ContractNoted", offer), ("ContractProposed", contract), ("PlacesReserved", offer),
            ("ContractSigned", contract),
        }  # fmt: skip

    assert told[COMPANY] == market_of(first) and told[COMPANY_2] == market_of(second)
    offers = {("OfferPublished", first["offer"]), ("OfferPublished", second["offer"])}
    assert told[EGY] == offers | {("ContractProposed", first["contract"]), ("ContractSigned", first["contract"])}
    assert told[PAK] == offers | {("ContractProposed", second["contract"]), ("ContractSigned", second["contract"])}
    assert told["amanah"] == {("BuildingLicensed", first["building"]), ("BuildingLicensed", second["building"])}
    assert told["civil_defence"] == {("InspectionPassed", m["building"]) for m in (first, second)}
    on_the_road = {("TripDeparted", trip), ("CheckpointPassed", trip), ("TripArrived", trip)}
    assert told["road_security"] == on_the_road
    assert told["naqaba"] == on_the_road | {("TripScheduled", trip)}


def test_roles_not_told_and_bad_requests_are_refused(server: Server) -> None:
    analyst = Client(server, "analyst")
    assert analyst.status == 403 and analyst.problem["role"] == "analyst"
    unknown = Client(server, "ministry", event=["Registered", "Teleported"])
    assert unknown.status == 422 and "Teleported" in unknown.problem["detail"]
    for text in ("seven", "-1", "9223372036854775808"):
        bad_id = Client(server, "ministry", headers={"Last-Event-ID": text})
        assert bad_id.status == 422, text
        assert bad_id.problem["errors"] == [{"path": "header.last-event-id", "reason": ANY}], text


def test_resuming_after_a_disconnect_misses_nothing_and_repeats_nothing(server: Server) -> None:
    first = Client(server, "ministry", after=0)
    _journey_to_hospital(server)
    eventually(lambda: first.has(4), 10, "the first events")
    first.close()
    received = first.ids()
    for _ in range(3):
        server.register(EGY)
    by_header = Client(server, "ministry", headers={"Last-Event-ID": str(received[-1])})
    by_query = Client(server, "ministry", after=received[-1])
    try:
        _journey_to_hospital(server)
        everything = server.positions()
        for client in (by_header, by_query):
            eventually(partial(_caught_up, client, received, everything), 10, "the rest of the log")
    finally:
        by_header.close()
        by_query.close()
    assert received + by_header.ids() == everything == received + by_query.ids()


def test_a_backlog_opens_the_stream_with_the_caller_s_latest_events(server: Server) -> None:
    _, own = _journey_to_hospital(server)
    server.register(PAK)  # another mission's: the ministry is told of it, EGY is not
    everything = server.positions()
    ministry, egy = Client(server, "ministry", backlog=3), Client(server, EGY, backlog=2)
    try:
        eventually(lambda: ministry.has(3) and egy.has(2), 10, "the latest events")
        server.register(EGY)
        eventually(lambda: ministry.has(4) and egy.has(3), 10, "the next event, live")
    finally:
        ministry.close()
        egy.close()
    assert ministry.ids() == everything[-3:] + server.positions()[-1:]
    assert egy.ids() == own[-2:] + server.positions()[-1:]
    assert Client(server, "ministry", backlog=0).status == 422


def test_a_mission_s_backlog_is_found_behind_the_other_missions_events(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A mission's latest events may lie far back (the other missions' departures came after): past the pages looked
    back through, the stream looks on from its journeys' last event (journey_status); a role told of every event of
    its types (the Ministry of Health) starts where the last of them begin (trail_index). Without the views' word
    (not yet built), it opens with what the last pages hold."""
    monkeypatch.setattr(feed, "PAGE", 2)
    monkeypatch.setattr(feed, "RECENT_PAGES", 1)
    _, own = _journey_to_hospital(server)
    for _ in range(3):
        server.register(PAK)  # 3 positions of another mission's: past the one page of 2 looked through first
    unbuilt = Client(server, EGY, backlog=2)  # answered: the stream has opened, its backlog would follow at once
    try:
        time.sleep(1)
    finally:
        unbuilt.close()
    assert unbuilt.ids() == []
    runner = Runner(FOLLOWED, server.url)
    try:
        runner.run(once=True)
    finally:
        runner.close()
    egy, health = Client(server, EGY, backlog=2), Client(server, "moh", backlog=1)
    try:
        eventually(lambda: egy.has(2), 10, "the mission's latest events, behind the other mission's")
        eventually(lambda: health.has(1), 10, "the ministry of health's latest event, an admission far back")
    finally:
        egy.close()
        health.close()
    assert egy.ids() == own[-2:]
    assert [m.event for m in health.messages] == ["HospitalAdmitted"]


def _caught_up(client: Client, received: list[int], everything: list[int]) -> bool:
    return received + client.ids() == everything


def test_filtering_by_event_type(server: Server) -> None:
    client = Client(server, EGY, after=0, event=["VisaIssued", "HospitalAdmitted"])
    try:
        _journey_to_hospital(server)
        eventually(lambda: client.has(2), 10, "the events asked for")
        time.sleep(3 * HEARTBEAT)
    finally:
        client.close()
    assert [m.event for m in client.messages] == ["VisaIssued", "HospitalAdmitted"]


def test_heartbeats_keep_an_idle_stream_alive(server: Server) -> None:
    client = Client(server, "ministry")
    try:
        eventually(lambda: len(client.comments) >= 3, 5 * HEARTBEAT + 5, "three heartbeats")
        server.register(EGY)
        eventually(lambda: client.has(1), 10, "the event after the heartbeats")
    finally:
        client.close()
    assert not client.ended


def test_a_client_that_falls_behind_is_ended_where_it_can_resume(server: Server) -> None:
    """A burst beyond the buffer (40 here) ends the stream after the last event given; the client resumes from there
    and gets the rest from the log: no gap, no repeat. A client reading the same burst from the log is not ended."""
    live = Client(server, "ministry")
    start = server.positions()
    body = {"commands": [{"event": "Registered", **registration("EGY")} for _ in range(100)]}
    server.post(EGY, "/v1/commands:batch", body)  # one transaction: one stretch of 100 for the reader
    everything = server.positions()[len(start) :]
    eventually(lambda: live.ended, 10, "the stream ended")
    live.close()
    assert live.ids() == everything[: len(live.ids())] and 0 < len(live.ids()) <= 40
    # The reason is the stream's last line but for a heartbeat, which sse-starlette may send while the stream closes.
    assert "fell behind" in [c for c in live.comments if not c.startswith(": ping")][-1]
    resumed = Client(server, "ministry", headers={"Last-Event-ID": str(live.ids()[-1])})
    try:
        eventually(lambda: live.ids() + resumed.ids() == everything, 10, "the rest")
    finally:
        resumed.close()
    assert not resumed.ended


@pytest.mark.parametrize("server", [1000], indirect=True)  # a stretch of the log (PAGE) fits
def test_a_client_that_stops_reading_slows_no_one(server: Server) -> None:
    """A client that stops reading its socket: writers and other clients carry on; once its socket and its buffer
    are full its stream is ended, after the last event it was given."""
    head = f"GET /v1/feed HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {server.keys['ministry']}\r\n\r\n"
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect(("127.0.0.1", int(server.base.rsplit(":", 1)[1])))
    stalled.sendall(head.encode())
    reader = Client(server, "ministry")
    hub = server.app.state.services.feed
    eventually(lambda: len(hub.subscribers) == 2, 10, "both clients subscribed")
    before = len(server.positions())  # the season's opening: before the clients came
    try:
        for _ in range(200):  # until the stalled client's buffer is full: the socket's buffers take some first
            body = {"commands": [{"event": "Registered", **registration("EGY", pre_cleared=True)} for _ in range(100)]}
            server.post(EGY, "/v1/commands:batch", body)
            if any(s.full for s in hub.subscribers):
                break
        total = len(server.positions()) - before
        eventually(lambda: reader.has(total), 30, "the reading client told of everything")
    finally:
        reader.close()
    assert not reader.ended
    stalled.settimeout(10)
    received = b""
    while not received.endswith(b"\r\n0\r\n\r\n"):  # the chunked body's end
        chunk = stalled.recv(65536)
        assert chunk, "the connection closed before the stream's end"
        received += chunk
    stalled.close()
    ids = [int(line.split(b": ")[1]) for line in received.split(b"\r\n") if line.startswith(b"id: ")]
    assert b"fell behind" in received and ids == reader.ids()[: len(ids)] and len(ids) < total, len(ids)


FOLLOWERS = (EGY, PAK, COMPANY, COMPANY_2, "ministry", "mofa")  # who follows live, on each node
RESUMERS = (EGY, COMPANY, COMPANY_2, "ministry")  # who resumes from the past, on each node


@pytest.mark.parametrize("server", [10_000], indirect=True)
def test_resumed_feeds_change_nothing_live_clients_are_told(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """On two nodes of one store, clients follow live while others resume from before many registrations (by
    `after` and by `Last-Event-ID`), and some leave halfway through the past: their last stretch met registrations,
    not yet the contracts. Every client is told exactly what a fresh reader of the log tells it, and a company hears
    of its contracted pilgrims' later steps (a node forgot who owned a journey: the company heard none)."""
    monkeypatch.setattr(feed, "PAGE", 4)  # the past in short stretches: many end between a registration and a contract
    with serving(server.url, server.keys) as other:
        nodes = (server, other)
        contracts = {m: str(server.contract_of(m, c)) for m, c in ((EGY, COMPANY), (PAK, COMPANY_2))}
        start = server.positions()[-1]
        clients = [(who, start, Client(node, who)) for node in nodes for who in FOLLOWERS]
        for hub in (node.app.state.services.feed for node in nodes):
            eventually(partial(_following, hub, start), 10, "the followers joined")
        journeys = {mission: [server.register(mission) for _ in range(8)] for mission in (EGY, PAK)}
        for mission, ids in journeys.items():
            for journey in ids:
                server.step(mission, journey, "package-contracted", contract_id=contracts[mission], package_id="PKG-1")
        middle = server.positions()[-30]  # among the contracts
        try:
            for steps in (_visa, _arrival):
                for node in nodes:
                    for who in RESUMERS:
                        clients += [
                            (who, start, Client(node, who, after=start)),
                            (who, start, Client(node, who, headers={"Last-Event-ID": str(start)})),
                            (who, middle, Client(node, who, after=middle)),
                        ]
                _all_told(server, clients)
                for node in nodes:  # the last to read the past before the next steps
                    for chunks in (2, 3, 4):  # the opening line, then 1 to 3 stretches of the past
                        _leave_halfway(node, "ministry", start, chunks)
                for mission, ids in journeys.items():
                    for journey in ids:
                        steps(server, mission, journey)
            told = _all_told(server, clients)
            time.sleep(3 * HEARTBEAT)  # and nothing more
        finally:
            for _, _, client in clients:
                client.close()
    for who, after, client in clients:
        assert client.ids() == _told_to(told, server, who, after), (who, after)
    for who, _, client in clients[: len(FOLLOWERS) * 2]:
        if who in (COMPANY, COMPANY_2):  # each of its 8 pilgrims' steps from the contract on
            events = [m.event for m in client.messages]
            assert all(events.count(e) == 8 for e in ("PackageContracted", "VisaIssued", "EntryCleared")), events


def _following(hub: feed.Feed, start: int) -> bool:
    return len(hub.subscribers) == len(FOLLOWERS) and hub.position == start


def _all_told(server: Server, clients: list[tuple[str, int, Client]]) -> list[Told]:
    """Once each client is told what a fresh reader of the log tells it: the log as that reader tells of it."""
    told = _freshly_told(server)
    for who, after, client in clients:
        expected = _told_to(told, server, who, after)
        eventually(partial(_told, client, expected), 30, f"{who} after {after} told what a fresh reader tells")
    return told


def _told(client: Client, expected: list[int]) -> bool:
    return client.ids() == expected


def _visa(server: Server, mission: str, journey: UUID) -> None:
    server.step(mission, journey, "visa-requested")
    server.step("mofa", journey, "visa-issued", valid_until=(T0 + timedelta(days=90)).isoformat())


def _arrival(server: Server, _mission: str, journey: UUID) -> None:
    server.step("gaca", journey, "arrived-at-port", port="JED-HAJJ", mode="air", flight="SV1")
    server.step("jawazat", journey, "entry-cleared", port="JED-HAJJ")


def _leave_halfway(node: Server, who: str, after: int, chunks: int) -> None:
    """A client that leaves while reading the past: its stream, on the node's own hub, read `chunks` writes in, then
    closed (as a client's disconnect closes it)."""
    services = node.app.state.services
    agency = services.keys.agency(node.keys[who])

    async def read() -> None:
        stream = services.feed.stream(agency, after, None)
        try:
            for _ in range(chunks):
                await anext(stream)
        finally:
            await stream.aclose()

    asyncio.run_coroutine_threadsafe(read(), node.loop).result(30)


def _freshly_told(server: Server) -> list[Told]:
    """The log as a reader of its own tells of it, from the start."""
    ledger = JourneyLedger(server.url, create_tables=False)
    try:
        return Following(ledger).read(0, 100_000)[1]
    finally:
        ledger.close()


def _told_to(told: list[Told], server: Server, who: str, after: int) -> list[int]:
    agency = server.app.state.services.keys.agency(server.keys[who])
    return [
        t.position for t in told if t.position > after and may_follow(agency.role, agency.agency_id, t.event, t.owners)
    ]


def test_the_stream_opens_at_once(server: Server) -> None:
    """The status line and a first comment line come at once, not with the first heartbeat (15 s by default)."""
    server.app.state.services.feed.heartbeat = 600.0
    head = f"GET /v1/feed HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {server.keys['ministry']}\r\n\r\n"
    with socket.create_connection(("127.0.0.1", int(server.base.rsplit(":", 1)[1])), timeout=30) as connection:
        connection.sendall(head.encode())
        received = b""
        while OPENING not in received:
            chunk = connection.recv(65536)
            assert chunk, received
            received += chunk
    assert received.startswith(b"HTTP/1.1 200 ") and b"content-type: text/event-stream" in received


def test_a_filter_by_an_event_the_role_is_never_told_of_is_refused(server: Server) -> None:
    mofa = Client(server, "mofa", event=["VisaIssued", "HospitalAdmitted", "Departed"])
    assert mofa.status == 422 and mofa.problem["errors"] == [
        {"path": "query.event", "reason": f"role mofa is never told of {name}"}
        for name in ("Departed", "HospitalAdmitted")
    ]
    assert mofa.problem["detail"].endswith(f"it may follow: {', '.join(sorted(FEED_EVENTS[Role.MOFA]))}")
    told = Client(server, "mofa", event=["VisaIssued"])
    told.close()
    assert told.status == 200


def test_a_position_past_the_head_is_refused_as_min_position_is(server: Server) -> None:
    """Past the head, the stream would silently skip what is recorded next, up to that position."""
    server.register(EGY)
    head = server.positions()[-1]
    authorization = {"Authorization": f"Bearer {server.keys['ministry']}"}
    view = server.http.get(f"{server.base}/v1/views/journey_status?min_position={head + 50}", headers=authorization)
    assert view.status_code == 422
    for name, client in (
        ("last-event-id", Client(server, "ministry", headers={"Last-Event-ID": str(head + 50)})),
        ("after", Client(server, "ministry", after=head + 50)),
    ):
        path = f"{'header' if name == 'last-event-id' else 'query'}.{name}"
        assert client.status == 422 and client.problem["errors"] == [
            {"path": path, "reason": f"beyond the ledger's head ({head})"}
        ]
        assert client.problem["detail"] == view.json()["detail"].replace("min_position", name)
    at_head = Client(server, "ministry", after=head)
    at_head.close()
    assert at_head.status == 200


def test_a_revoked_key_s_open_stream_ends(server: Server) -> None:
    """Within the promised 5 s (its key looked at every 2 s): here, within a generous bound, with a `revoked` event;
    another agency's stream goes on."""
    engine = engine_for(server.url)
    try:
        with engine.begin() as connection:
            _, server.keys["desk"] = agencies.add(connection, Role.MINISTRY, "the ministry's desk")
        live, resumed, other = Client(server, "desk"), Client(server, "desk", after=0), Client(server, "ministry")
        try:
            server.register(EGY)
            eventually(lambda: live.has(1) and resumed.has(1) and other.has(1), 10, "the streams told of an event")
            with engine.begin() as connection:
                agencies.revoke(connection, "ministry-the-ministry-s-desk")
            eventually(lambda: live.ended and resumed.ended, 15, "the revoked key's streams ended")
            server.register(EGY)
            eventually(lambda: other.has(2), 10, "the other stream told of the next event")
        finally:
            for client in (live, resumed, other):
                client.close()
    finally:
        engine.dispose()
    revoked = Message(None, "revoked", {"reason": "the key was revoked"})
    assert live.messages[-1] == resumed.messages[-1] == revoked and not other.ended


def test_a_revoked_key_s_wait_for_a_position_ends(server: Server) -> None:
    """A read waiting for `min_position` (the views never reach it here: nothing fills them) answers 401 once its
    key is revoked, not the 503 its wait would end with."""
    server.app.state.services.reads.revocations.every = 0.2
    server.app.state.services.reads.max_wait = 30.0
    engine = engine_for(server.url)
    try:
        with engine.begin() as connection:
            _, key = agencies.add(connection, Role.MINISTRY, "the ministry's desk")
        journey = server.register(EGY)
        head = server.positions()[-1]
        paths = [f"/v1/views/journey_status?min_position={head}", f"/v1/journeys/{journey}?min_position={head}"]
        paths += [f"/v1/summary?min_position={head}", f"/v1/views/season_funnel?min_position={head}&season=1446"]
        answers: dict[str, httpx.Response] = {}
        authorization = {"Authorization": f"Bearer {key}"}

        def ask(path: str) -> None:
            answers[path] = httpx.get(f"{server.base}{path}", headers=authorization, timeout=60)

        assert server.http.get(f"{server.base}/v1/agency", headers=authorization).status_code == 200
        waiting = [threading.Thread(target=ask, args=(path,)) for path in paths]
        for thread in waiting:  # let in by the key cache for a few seconds more, whenever they come
            thread.start()
        time.sleep(0.5)
        with engine.begin() as connection:
            agencies.revoke(connection, "ministry-the-ministry-s-desk")
        for thread in waiting:
            thread.join(60)
    finally:
        engine.dispose()
    for path in paths:
        assert answers[path].status_code == 401, (path, answers[path].text)
        assert answers[path].json()["detail"] == "the key was revoked", path


def test_the_open_streams_keys_are_looked_at_together(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """One look at the store every interval for all the streams a process holds open, whatever their number (the
    key of each looked at alone, 50 clients took the connections the requests' key checks wait for); none while
    no stream is open."""
    revocations, looks = _looks(server, monkeypatch, threading.Event())
    server.register(EGY)
    time.sleep(3 * revocations.every)
    assert looks == []
    who = [EGY, PAK, COMPANY, "naqaba", "moh", "ministry"]
    clients = [Client(server, name) for name in who] + [Client(server, name, after=0) for name in who]
    try:
        agency_ids = {server.app.state.services.keys.agency(server.keys[name]).agency_id for name in who}
        opened = len(looks)  # the look under way, if any, may have begun before the last stream opened
        eventually(lambda: len(looks) >= opened + 5, 10, "five looks")
        assert all(ids == agency_ids for ids in looks[opened + 1 :])
        since, seen = time.monotonic(), len(looks)
        time.sleep(10 * revocations.every)
        # At least `every` apart, whatever the number of streams: a look for each would make some 120 here.
        assert len(looks) - seen <= (time.monotonic() - since) / revocations.every + 1
    finally:
        for client in clients:
            client.close()
    eventually(lambda: not revocations.open, 10, "the streams closed")
    seen = len(looks)
    time.sleep(3 * revocations.every)
    assert len(looks) <= seen + 1  # one may have begun as the last stream closed


def test_a_look_at_the_keys_that_fails_is_taken_again(
    server: Server, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The database away: the look is logged and taken again at the next interval, and the streams go on (no event
    comes meanwhile either); a revoked key's stream ends at the first look that works."""
    away = threading.Event()
    away.set()
    _, looks = _looks(server, monkeypatch, away)
    engine = engine_for(server.url)
    try:
        with engine.begin() as connection:
            _, server.keys["desk"] = agencies.add(connection, Role.MINISTRY, "the ministry's desk")
        desk = Client(server, "desk")
        try:
            with engine.begin() as connection:
                agencies.revoke(connection, "ministry-the-ministry-s-desk")
            eventually(lambda: len(looks) >= 3, 10, "three looks that failed")
            assert not desk.ended
            away.clear()
            eventually(lambda: desk.ended, 10, "the revoked key's stream ended")
        finally:
            desk.close()
    finally:
        engine.dispose()
    assert desk.messages == [Message(None, "revoked", {"reason": "the key was revoked"})]
    assert "could not look at the open answers' keys" in caplog.text


def _looks(
    server: Server, monkeypatch: pytest.MonkeyPatch, away: threading.Event
) -> tuple[agencies.Revocations, list[set[str]]]:
    """The server's watch of the open answers' keys, looking every 0.2 s, and the agencies each of its looks asks
    about; while `away` is set, each fails as with the database away."""
    revocations: agencies.Revocations = server.app.state.services.feed.revocations
    revocations.every = 0.2
    looks: list[set[str]] = []
    look = revocations.revoked

    def counted(agency_ids: Collection[str]) -> set[str]:
        looks.append(set(agency_ids))
        if away.is_set():
            raise sa.exc.OperationalError("SELECT", None, ConnectionError("the database is away"))
        return look(agency_ids)

    monkeypatch.setattr(revocations, "revoked", counted)
    return revocations, looks
