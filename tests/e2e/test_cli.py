"""The `hajj-ledger` command, run as a user runs it, against SQLite and PostgreSQL: as a process where that is
what is tested (the installed script, pipes), in process elsewhere (the same `main`, without a second's start)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from hajj_ledger.ledger import JourneyLedger
from tests.support import (
    COMPANY_ID,
    EXECUTABLE,
    T0,
    Ran,
    open_market,
    registration_command,
    run_cli,
    season_command,
    season_opened,
)

JAWAZAT = ("--role", "jawazat", "--agency", "jawazat-IST")


def run(store_url: str, *args: str, stdin: str = "") -> Ran:
    return run_cli(*args, env={"HAJJ_LEDGER_DATABASE_URL": store_url}, stdin=stdin)


def run_process(store_url: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """As a shell runs it: the installed script, its arguments, standard input and output through pipes."""
    env = {**os.environ, "HAJJ_LEDGER_DATABASE_URL": store_url}
    return subprocess.run([str(EXECUTABLE), *args], input=stdin, capture_output=True, text=True, env=env, timeout=120)


def test_help_lists_the_commands(tmp_path: Path) -> None:
    result = run_process(f"sqlite:///{tmp_path}/l.db", "--help")
    assert result.returncode == 0
    for command in ("record", "history", "rules", "simulate", "demo", "trail", "as-of", "replay", "view"):
        assert command in result.stdout


@pytest.mark.parametrize(
    ("typed", "meant"),
    [(["histroy"], "'history'"), (["serv"], "'serve'"), (["identity", "shwo"], "'show'"),
     (["signing-key", "publik"], "'public'"), (["view", "jorney_status"], "'journey_status'")],
)  # fmt: skip
def test_a_mistyped_command_gets_a_did_you_mean(tmp_path: Path, typed: list[str], meant: str) -> None:
    mistyped = run(f"sqlite:///{tmp_path}/l.db", *typed)
    assert mistyped.returncode == 2 and f"invalid choice: {typed[-1]!r}; did you mean {meant}?" in mistyped.stderr
    nonsense = run(f"sqlite:///{tmp_path}/l.db", "zzzzz")
    assert nonsense.returncode == 2 and "did you mean" not in nonsense.stderr and "'history'" in nonsense.stderr


def test_record_then_history(store_url: str) -> None:
    pilgrim = uuid4()
    registration = registration_command("NGA", pilgrim_id=str(pilgrim))
    season_opened(store_url)
    first = run_process(store_url, "record", "--role", "mission", "--agency", "mission-NGA-1", json.dumps(registration))
    assert first.returncode == 0, first.stderr
    outcome = json.loads(first.stdout)
    assert (outcome["event"], outcome["position"], outcome["repeated"]) == ("Registered", 2, False)

    ledger = JourneyLedger(store_url)
    try:
        market = open_market(ledger, 1, mission="mission-NGA-1")
        opened = ledger.head()
    finally:
        ledger.close()
    contract = {
        "event": "PackageContracted",
        "command_id": str(uuid4()),
        "occurred_at": T0.isoformat(),
        "journey_id": outcome["aggregate_id"],
        "contract_id": str(market.contract_id),
        "package_id": "PKG-7",
    }
    second = run_process(
        store_url, "record", "--role", "mission", "--agency", "mission-NGA-1", stdin=json.dumps(contract)
    )
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["position"] == opened + 2  # the contract's PlaceTaken, then the journey's step

    again = run_process(store_url, "record", "--role", "mission", "--agency", "mission-NGA-1", json.dumps(registration))
    assert json.loads(again.stdout) == {**outcome, "repeated": True}

    history = run_process(store_url, "history", str(pilgrim), "--season", "1446", "--json")
    assert history.returncode == 0, history.stderr
    rows = [json.loads(line) for line in history.stdout.splitlines()]
    assert [r["event"] for r in rows] == ["Registered", "PackageContracted"]
    assert rows[1]["agency_id"] == "mission-NGA-1" and rows[1]["role"] == "mission"
    assert rows[1]["occurred_at"] == T0.isoformat()
    assert rows[1]["recorded_at"] > rows[1]["occurred_at"]
    assert rows[1]["details"] == {
        "company_id": COMPANY_ID,
        "package_id": "PKG-7",
        "contract_id": str(market.contract_id),
    }

    by_journey = run_process(store_url, "history", outcome["aggregate_id"])
    assert by_journey.returncode == 0 and "PackageContracted" in by_journey.stdout


def test_refusals_exit_non_zero_with_a_reason(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/l.db"
    bad = run(url, "record", "--role", "jawazat", "--agency", "j", '{"event": "EntryCleared"}')
    assert bad.returncode == 1
    error = json.loads(bad.stderr)
    assert error["error"] == "invalid"
    assert {f["field"] for f in error["fields"]} == {
        "command_id",
        "occurred_at",
        "journey_id",
        "port",
    }

    unknown = {
        "event": "EntryCleared",
        "command_id": str(uuid4()),
        "occurred_at": T0.isoformat(),
        "journey_id": str(uuid4()),
        "port": "JED-HAJJ",
    }
    missing = run(url, "record", "--role", "jawazat", "--agency", "j", json.dumps(unknown))
    assert missing.returncode == 1 and json.loads(missing.stderr)["error"] == "not_found"

    nobody = run(url, "history", str(uuid4()))  # no season opened: no current season to look a pilgrim up in
    assert nobody.returncode == 1 and "no season has been opened" in nobody.stderr and "--season" in nobody.stderr
    nobody = run(url, "history", str(uuid4()), "--season", "1446")
    assert nobody.returncode == 1 and "neither a journey nor a pilgrim" in nobody.stderr


def test_an_unsupported_store_is_named(tmp_path: Path) -> None:
    result = run("mysql://root@localhost/x", "history", str(uuid4()))
    assert result.returncode == 2
    assert "HAJJ_LEDGER_DATABASE_URL" in result.stderr and "mysql" in result.stderr


def test_demo_simulates_a_season_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/l.db"
    first = run(url, "demo", "--pilgrims", "150")
    assert first.returncode == 0, first.stderr
    assert "simulating season 1446 with 150 pilgrims" in first.stdout
    assert "already recorded, 0 refused)" in first.stdout
    assert "Departed" in first.stdout and "Try: .venv/bin/hajj-ledger history" in first.stdout  # runnable as printed
    # Days as people say them: the day in Makkah and its Hijri date (Dhu al-Hijjah or Muharram, by the season's end).
    assert re.search(
        r"season funnel of 1446 .*, by \d{4}-\d\d-\d\d in Makkah \(\d+ [A-Za-z' -]+ 144[67]\)", first.stdout
    )
    assert re.search(r"happened \S+ \(\d{4}-\d\d-\d\d in Makkah, \d+ [A-Za-z' -]+ 144[67]\)", first.stdout)
    second = run(url, "demo", "--pilgrims", "150")
    assert "already holds" in second.stdout and "nothing simulated" in second.stdout
    assert _market_lines(first.stdout) == _market_lines(second.stdout) == _market_from_views(url)


def _market_lines(shown: str) -> dict[str, tuple[int, ...]]:
    """The demo's market as it printed it: its figures by line."""
    found: dict[str, tuple[int, ...]] = {}
    for line in shown.splitlines():
        numbers = tuple(int(n.replace(",", "")) for n in re.findall(r"(?<![\w-])\d[\d,]*(?![\w-])", line))
        if offer := re.match(r"  (\w+_housing|mashaer_camp|transport|catering) +(\w+) ", line):
            found[f"offers {offer[1]} {offer[2]}"] = numbers
        elif line.startswith("  contracts signed"):
            found["contracts"] = numbers
        elif building := re.match(r"  (makkah|madinah) ", line):
            found[f"buildings {building[1]}"] = numbers
        elif line.startswith("Buses (read model trips_on_road)"):
            found["buses"] = numbers
    return found


def _market_from_views(url: str) -> dict[str, tuple[int, ...]]:
    """The same figures summed from the views' own rows."""

    def rows(name: str) -> list[dict[str, Any]]:
        shown = run(url, "view", name, "--limit", "100000")
        assert shown.returncode == 0, shown.stderr
        return [json.loads(line) for line in shown.stdout.splitlines()]

    def summed(chosen: list[dict[str, Any]], *columns: str) -> tuple[int, ...]:
        return (len(chosen), *(sum(r[c] for r in chosen) for c in columns))

    found: dict[str, tuple[int, ...]] = {}
    offers = [r for r in rows("service_offers") if r["status"] == "published"]
    for kind, site in {(r["kind"], r["site"]) for r in offers}:
        chosen = [r for r in offers if (r["kind"], r["site"]) == (kind, site)]
        found[f"offers {kind} {site}"] = summed(chosen, "places", "contracted", "free")
    found["contracts"] = summed([r for r in rows("contracts") if r["status"] == "signed"], "places", "used", "free")
    buildings = rows("building_occupancy")
    for city in {r["city"] for r in buildings}:
        chosen = [r for r in buildings if r["city"] == city]
        suspended = sum(r["licence"] == "suspended" for r in chosen)
        passed = sum(r["inspection"] == "passed" for r in chosen)
        found[f"buildings {city}"] = (*summed(chosen, "beds", "occupied", "free"), suspended, passed)
    trips = rows("trips_on_road")
    on_road = sum(r["status"] == "on_road" for r in trips)
    found["buses"] = (len(trips), len(trips) - on_road, on_road, sum(r["overdue"] for r in trips))
    assert found["contracts"][0] > 0 and found["buses"][0] > 0 and any(k.startswith("buildings") for k in found)
    return found


def test_simulate_prints_a_summary(tmp_path: Path) -> None:
    result = run(f"sqlite:///{tmp_path}/l.db", "simulate", "--pilgrims", "120", "--seed", "4")
    assert result.returncode == 0, result.stderr
    assert "pilgrims  120" in result.stdout and "events per type:" in result.stdout
    assert "MovedToSite" in result.stdout
    future = run(f"sqlite:///{tmp_path}/l.db", "simulate", "--pilgrims", "10", "--season", "1460")
    assert future.returncode == 1 and "has not ended" in future.stderr


def test_read_model_commands(store_url: str) -> None:
    assert run(store_url, "simulate", "--pilgrims", "60", "--seed", "8").returncode == 0
    assert run(store_url, "migrate").returncode == 0
    behind = json.loads(run(store_url, "status", "--json").stdout)
    # The views, and the audit trail's index, which the same runner keeps.
    assert {s["projection"] for s in behind} >= {"journey_status", "season_funnel", "overstay_watch", "trail_index"}
    assert all(s["lag_events"] == s["head"] > 0 for s in behind)
    assert run(store_url, "project", "--once").returncode == 0
    caught_up = json.loads(run(store_url, "status", "--json").stdout)
    assert all(s["lag_events"] == 0 and s["generation"] == "a" for s in caught_up)
    viewed = [json.loads(line) for line in run(store_url, "view", "journey_status", "--limit", "5").stdout.splitlines()]
    times = [row[name] for row in viewed for name in ("last_occurred_at", "last_recorded_at")]
    assert len(times) == 10 and all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", t) for t in times), times
    rebuilt = run(store_url, "rebuild", "trip_manifest")
    assert rebuilt.returncode == 0 and "swapped in" in rebuilt.stdout
    after = {s["projection"]: s for s in json.loads(run(store_url, "status", "--json").stdout)}
    assert after["trip_manifest"]["generation"] == "b" and after["trip_manifest"]["lag_events"] == 0
    assert run(store_url, "rebuild", "trail_index").returncode == 0
    trail = run(store_url, "trail", "--agency", "naqaba", "--event", "Boarded", "--limit", "3", "--json")
    assert [json.loads(line)["event"] for line in trail.stdout.splitlines()] == ["Boarded"] * 3, trail.stderr
    before = {s["projection"]: s["generation"] for s in json.loads(run(store_url, "status", "--json").stdout)}
    assert run(store_url, "rebuild").returncode == 0  # no name: every read model, in one pass of the log
    everything = json.loads(run(store_url, "status", "--json").stdout)
    assert all(s["generation"] != before[s["projection"]] and s["lag_events"] == 0 for s in everything)
    unknown = run(store_url, "rebuild", "nothing_here")
    assert unknown.returncode == 1 and "no projection 'nothing_here'" in unknown.stderr


def test_read_model_commands_before_migrate_say_so(tmp_path: Path) -> None:
    result = run(f"sqlite:///{tmp_path}/l.db", "project", "--once")
    assert result.returncode == 2
    assert "run `hajj-ledger migrate`" in result.stderr


def test_register_with_identity_then_erase(store_url: str) -> None:
    pilgrim = uuid4()
    identity = {
        "name_arabic": "أحمد يلدز", "name_latin": "AHMET YILDIZ", "passport_number": "U12345678",
        "passport_country": "TUR", "nationality": "TUR", "date_of_birth": "1955-07-01", "gender": "male",
    }  # fmt: skip
    registration = registration_command("TUR", pilgrim_id=str(pilgrim), identity=identity)
    assert run(store_url, "record", "--role", "ministry", "--agency", "ministry", season_command()).returncode == 0
    recorded = run(store_url, "record", "--role", "mission", "--agency", "mission-TUR-1", json.dumps(registration))
    assert recorded.returncode == 0, recorded.stderr
    assert json.loads(recorded.stdout)["events"] == ["Registered"]
    journey_id = json.loads(recorded.stdout)["aggregate_id"]
    shown = run(store_url, "identity", "show", str(pilgrim), "--role", "jawazat", "--agency", "jawazat-IST")
    assert json.loads(shown.stdout)["name_latin"] == "AHMET YILDIZ", shown.stderr
    refused = run(store_url, "identity", "show", str(pilgrim), "--role", "analyst", "--agency", "a-1")
    assert refused.returncode == 1 and "may not read identity" in refused.stderr
    by_passport = run(store_url, "identity", "find", "--passport", "u12345678", "--country", "TUR", *JAWAZAT)
    assert by_passport.stdout.split() == [journey_id]
    by_name = run(
        store_url, "identity", "find", "--name", "Ahmed Yildiz", "--role", "mission", "--agency", "mission-TUR-1"
    )
    assert by_name.stdout.split() == [journey_id]
    elsewhere = run(store_url, "identity", "find", "--name", "Ahmed", "--role", "mission", "--agency", "mission-EGY-1")
    assert elsewhere.returncode == 1 and elsewhere.stdout == ""
    erased = run(store_url, "erase", str(pilgrim), "--reason", "pilgrim_request")
    assert erased.returncode == 0, erased.stderr
    assert json.loads(erased.stdout)["events"] == ["IdentityErased"]
    history = run(store_url, "history", str(pilgrim), "--json")
    rows = [json.loads(line) for line in history.stdout.splitlines()]
    assert [r["event"] for r in rows] == ["Registered", "IdentityErased"]
    assert rows[-1]["role"] == "ministry" and rows[-1]["details"] == {"reason": "pilgrim_request"}
    assert "YILDIZ" not in history.stdout
    gone = run(store_url, "identity", "find", "--passport", "U12345678", "--country", "TUR", *JAWAZAT)
    assert gone.returncode == 1 and gone.stdout == ""
    again = run(store_url, "erase", str(pilgrim), "--reason", "pilgrim_request")
    assert again.returncode == 1 and "needs an identity in the vault" in again.stderr


def test_trail_as_of_view_and_replay(store_url: str, tmp_path: Path) -> None:
    assert run(store_url, "simulate", "--pilgrims", "30", "--seed", "9").returncode == 0
    boarded = run(store_url, "trail", "--event", "Boarded", "--limit", "5", "--json")
    assert boarded.returncode == 0, boarded.stderr
    rows = [json.loads(line) for line in boarded.stdout.splitlines()]
    assert len(rows) == 5 and {r["event"] for r in rows} == {"Boarded"}
    assert f"more: --after {rows[-1]['position']}" in boarded.stderr
    following = run(store_url, "trail", "--event", "Boarded", "--limit", "5", "--after", str(rows[-1]["position"]))
    assert following.stdout.count("Boarded") == 5 and str(rows[-1]["command_id"]) not in following.stdout

    first = rows[0]
    journey = run(store_url, "trail", first["aggregate_id"], "--json")
    events = [json.loads(line) for line in journey.stdout.splitlines()]
    assert events[0]["event"] == "Registered" and {e["aggregate_id"] for e in events} == {first["aggregate_id"]}
    assert [e["position"] for e in events] == sorted(e["position"] for e in events) and first in events
    assert journey.stderr == ""  # the whole journey in one page

    before = run(store_url, "as-of", first["aggregate_id"], "--position", str(first["position"] - 1))
    assert before.returncode == 0, before.stderr
    assert json.loads(before.stdout)["journey"]["stage"] == "bus_assigned"
    happened = run(store_url, "as-of", first["aggregate_id"], "--occurred-at", first["occurred_at"])
    assert json.loads(happened.stdout)["journey"]["stage"] == "boarded"
    zoneless = run(store_url, "as-of", first["aggregate_id"], "--occurred-at", "2025-05-01T08:00:00")
    assert zoneless.returncode == 2 and "no time zone" in zoneless.stderr

    position = first["position"]
    view = run(store_url, "view", "journey_status", "--as-of", str(position), "--limit", "1000")
    assert view.returncode == 0, view.stderr
    statuses = [json.loads(line) for line in view.stdout.splitlines()]
    assert statuses and all(s["position"] <= position and s["last_recorded_at"].endswith("Z") for s in statuses)

    replayed = run(store_url, "replay", "--until", str(position), "--into", str(tmp_path / "replays"))
    assert replayed.returncode == 0, replayed.stderr
    assert f"read-models-at-{position}.sqlite3" in replayed.stdout and "journey_status" in replayed.stdout
    assert (tmp_path / "replays" / f"read-models-at-{position}.sqlite3").exists()
    beyond = run(store_url, "replay", "--until", "1000000", "--into", str(tmp_path / "replays"))
    assert beyond.returncode == 1 and "beyond the ledger's head" in beyond.stderr
    if store_url.startswith("postgresql"):
        schema = run(store_url, "replay", "--until", str(position), "--into", "audit_cli")
        assert schema.returncode == 0 and "schema audit_cli" in schema.stdout, schema.stderr
    else:
        schema = run(store_url, "replay", "--until", str(position), "--into", "audit_cli")
        assert schema.returncode == 1 and "not on PostgreSQL" in schema.stderr


def test_a_market_recorded_from_the_command_line(store_url: str) -> None:
    """Every kind of aggregate of the market, each step by the role that records it, as JSON to `record`; then the
    rules and the views show it."""
    building, offer, contract, trip = (str(uuid4()) for _ in range(4))
    season_opened(store_url)

    def record(role: str, agency: str, event: str, **fields: Any) -> Ran:
        body = {"event": event, "command_id": str(uuid4()), "occurred_at": T0.isoformat(), **fields}
        return run(store_url, "record", "--role", role, "--agency", agency, json.dumps(body))

    def recorded(role: str, agency: str, event: str, **fields: Any) -> list[str]:
        done = record(role, agency, event, **fields)
        assert done.returncode == 0, done.stderr
        events: list[str] = json.loads(done.stdout)["events"]
        return events

    licence = (T0 + timedelta(days=365)).isoformat()
    licensed = recorded("amanah", "amanah-makkah", "BuildingLicensed", building_id=building, company_id=COMPANY_ID,
                        city="makkah", district="Aziziyah", beds=4, licence_valid_until=licence)  # fmt: skip
    assert licensed == ["BuildingLicensed"]
    recorded("civil_defence", "civil_defence-makkah", "InspectionFailed", building_id=building, findings="exits")
    recorded("civil_defence", "civil_defence-makkah", "InspectionPassed", building_id=building, findings="compliant")
    recorded("amanah", "amanah-makkah", "LicenceSuspended", building_id=building, reason="fire_code")
    recorded("amanah", "amanah-makkah", "LicenceRenewed", building_id=building, licence_valid_until=licence)
    opens, closes = (T0 - timedelta(days=200)).isoformat(), (T0 + timedelta(days=100)).isoformat()
    recorded("company", COMPANY_ID, "OfferPublished", offer_id=offer, season=1446, kind="makkah_housing", site="makkah",
             places=5, price_sar=9000, valid_from=opens, valid_until=closes, building_ids=[building])  # fmt: skip
    recorded("company", COMPANY_ID, "OfferAmended", offer_id=offer, places=6, price_sar=8500)
    wrong_role = record("amanah", "amanah-makkah", "ContractProposed", contract_id=contract, offer_id=offer, places=4)
    assert wrong_role.returncode == 1 and json.loads(wrong_role.stderr)["error"] == "forbidden", wrong_role.stderr
    proposed = recorded("mission", "mission-NGA-1", "ContractProposed", contract_id=contract, offer_id=offer, places=4)
    assert proposed == ["ContractProposed", "ContractNoted"]
    not_its_own = record("company", "company-2", "ContractSigned", contract_id=contract)
    assert not_its_own.returncode == 1 and "another company's offer" in json.loads(not_its_own.stderr)["detail"]
    signed_events = recorded("company", COMPANY_ID, "ContractSigned", contract_id=contract)
    assert signed_events == ["PlacesReserved", "ContractSigned"]
    too_many = record("mission", "mission-NGA-1", "ContractAmended", contract_id=contract, places=7)
    refusal = json.loads(too_many.stderr)
    assert too_many.returncode == 1 and refusal["error"] == "offer_full", refusal
    assert "has 2 free places of 6 (4 contracted): 3 asked" in refusal["detail"]
    recorded("mission", "mission-NGA-1", "ContractAmended", contract_id=contract, places=5)
    journey = json.loads(run(store_url, "record", "--role", "mission", "--agency", "mission-NGA-1",
                             json.dumps(registration_command("NGA"))).stdout)["aggregate_id"]  # fmt: skip
    assert recorded("mission", "mission-NGA-1", "PackageContracted", journey_id=journey, contract_id=contract) == [
        "PlaceTaken", "PackageContracted",
    ]  # fmt: skip
    recorded("naqaba", "naqaba-1", "TripScheduled", trip_id=trip, operator="SAPTCO", bus_plate="KSA-1",
             origin="JED-HAJJ", destination="makkah", departs_at=T0.isoformat(), capacity=45,
             expected_arrival=(T0 + timedelta(hours=2)).isoformat())  # fmt: skip
    not_yet = record("road_security", "road_security-1", "CheckpointPassed", trip_id=trip, checkpoint="Shumaisi")
    assert not_yet.returncode == 1 and "scheduled" in not_yet.stderr
    recorded("naqaba", "naqaba-1", "TripDeparted", trip_id=trip)
    recorded("road_security", "road_security-1", "CheckpointPassed", trip_id=trip, checkpoint="Shumaisi")

    rules = run(store_url, "rules")
    for shown in ("Offer steps", "Contract steps", "Building steps", "| CheckpointPassed | road_security |",
                  "| BuildingLicensed | amanah |", "| InspectionFailed | civil_defence |"):  # fmt: skip
        assert shown in rules.stdout

    assert run(store_url, "migrate").returncode == 0
    assert run(store_url, "project", "--once").returncode == 0

    def view(name: str) -> list[dict[str, Any]]:
        return [json.loads(line) for line in run(store_url, "view", name).stdout.splitlines()]

    [offered] = view("service_offers")
    assert (offered["places"], offered["contracted"], offered["free"], offered["price_sar"]) == (6, 5, 1, 8500)
    [signed] = view("contracts")
    assert (signed["status"], signed["places"], signed["used"], signed["free"]) == ("signed", 5, 1, 4)
    [housing] = view("building_occupancy")
    assert (housing["beds"], housing["free"], housing["licence"], housing["inspection"]) == (4, 4, "valid", "passed")
    [on_road] = view("trips_on_road")
    assert (on_road["status"], on_road["last_checkpoint"], on_road["overdue"]) == ("on_road", "Shumaisi", True)
