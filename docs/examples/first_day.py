"""A season's first day in Python (httpx), as the curl examples take it: the market, a pilgrim from registration to
housing by bus, the feed, an auditor's proof, an analyst's export read in DuckDB. Against `make run`'s server, with
each agency's key in the variable named by its role (MISSION, COMPANY, ...); `pip install httpx duckdb`."""

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import duckdb
import httpx

api = httpx.Client(base_url=os.environ.get("API", "http://127.0.0.1:8000/v1"), timeout=30)


def post(role: str, path: str, body: dict) -> dict:
    """A write by the agency of `role` (its key in the variable of that name); a refusal raises, naming why."""
    answer = api.post(path, json=body, headers={"Authorization": f"Bearer {os.environ[role]}"})
    if answer.is_error:
        raise SystemExit(answer.text)
    return answer.json()


def get(role: str, path: str, **params: object) -> httpx.Response:
    return api.get(path, params=params, headers={"Authorization": f"Bearer {os.environ[role]}"}).raise_for_status()


def show(value: object) -> None:
    print(json.dumps(value, separators=(",", ":")))


# The market: a building licensed and inspected, an offer on it, a contract proposed and signed.
building = post("AMANAH", "/buildings", {
    "occurred_at": "2025-01-05T08:00:00Z", "company_id": "company-012", "city": "makkah", "district": "Aziziyah",
    "beds": 40, "licence_valid_until": "2025-12-31T00:00:00Z"})["aggregate_id"]  # fmt: skip
post("CIVIL_DEFENCE", f"/buildings/{building}/inspection-passed", {"occurred_at": "2025-01-06T08:00:00Z",
     "findings": "compliant"})  # fmt: skip
offer = post("COMPANY", "/offers", {
    "occurred_at": "2025-01-07T08:00:00Z", "season": 1446, "kind": "makkah_housing", "site": "makkah", "places": 40,
    "price_sar": 9000, "valid_from": "2025-01-07T00:00:00Z", "valid_until": "2025-07-31T00:00:00Z",
    "building_ids": [building]})["aggregate_id"]  # fmt: skip
contract = post("MISSION", "/contracts", {"occurred_at": "2025-01-08T08:00:00Z", "offer_id": offer, "places": 10})
signed = post("COMPANY", f"/contracts/{contract['aggregate_id']}/sign", {"occurred_at": "2025-01-09T08:00:00Z"})
show(signed["events"])
# ["PlacesReserved","ContractSigned"]

# A pilgrim: registered, contracted, its visa asked for and issued, then the port on the first day of arrivals.
registered = post("MISSION", "/journeys", {
    "pilgrim_id": str(uuid.uuid4()), "season": 1446, "country": "IDN", "occurred_at": "2025-04-01T08:00:00Z"})  # fmt: skip
journey = f"/journeys/{registered['aggregate_id']}"
steps = [
    ("MISSION", "package-contracted", {"occurred_at": "2025-04-01T09:00:00Z", "contract_id": contract["aggregate_id"]}),
    ("MISSION", "visa-requested", {"occurred_at": "2025-04-01T10:00:00Z"}),
    ("MOFA", "visa-issued", {"occurred_at": "2025-04-03T08:00:00Z", "valid_until": "2025-07-31T00:00:00Z"}),
    ("MISSION", "flight-booked", {"occurred_at": "2025-04-04T08:00:00Z", "direction": "arrival", "flight": "GA8201",
                                  "port": "JED-HAJJ", "scheduled_at": "2025-04-30T06:00:00Z"}),
    ("GACA", "arrived-at-port", {"occurred_at": "2025-04-30T06:30:00Z", "port": "JED-HAJJ", "mode": "air",
                                 "flight": "GA8201"}),
    ("JAWAZAT", "entry-cleared", {"occurred_at": "2025-04-30T07:00:00Z", "port": "JED-HAJJ"}),
    ("CUSTOMS", "customs-cleared", {"occurred_at": "2025-04-30T07:20:00Z", "port": "JED-HAJJ"}),
    ("WUKALA", "received-at-port", {"occurred_at": "2025-04-30T07:40:00Z", "port": "JED-HAJJ"}),
]  # fmt: skip
show([post(role, f"{journey}/{step}", body)["event"] for role, step, body in steps])
# ["PackageContracted","VisaRequested","VisaIssued","FlightBooked","ArrivedAtPort","EntryCleared","CustomsCleared","ReceivedAtPort"]

# A bus to Makkah, a checkpoint on the road, and the pilgrim housed in the building.
trip = post("NAQABA", "/trips", {
    "occurred_at": "2025-04-30T05:00:00Z", "operator": "Saptco", "bus_plate": "KSA 4821", "origin": "JED-HAJJ",
    "destination": "makkah", "departs_at": "2025-04-30T09:00:00Z", "capacity": 45,
    "expected_arrival": "2025-04-30T10:30:00Z"})["aggregate_id"]  # fmt: skip
steps = [
    ("NAQABA", f"{journey}/bus-assigned", {"occurred_at": "2025-04-30T08:00:00Z", "trip_id": trip}),
    ("NAQABA", f"{journey}/boarded", {"occurred_at": "2025-04-30T08:45:00Z", "trip_id": trip}),
    ("NAQABA", f"/trips/{trip}/trip-departed", {"occurred_at": "2025-04-30T09:00:00Z"}),
    ("ROAD_SECURITY", f"/trips/{trip}/checkpoint-passed", {"occurred_at": "2025-04-30T09:40:00Z",
                                                            "checkpoint": "Shumaisi"}),
    ("NAQABA", f"/trips/{trip}/trip-arrived", {"occurred_at": "2025-04-30T10:30:00Z"}),
    ("NAQABA", f"{journey}/transfer-completed", {"occurred_at": "2025-04-30T10:35:00Z", "trip_id": trip}),
    ("COMPANY", f"{journey}/housing-checked-in", {"occurred_at": "2025-04-30T11:00:00Z", "site": "makkah",
                                                  "building": "Aziziyah Tower 7", "building_id": building}),
]  # fmt: skip
housed = [post(role, path, body) for role, path, body in steps][-1]["position"]
# Read-your-writes: the journey once the views have the check-in.
status = get("MISSION", journey, min_position=housed).json()
show({name: status[name] for name in ("stage", "place", "last_event")})
# {"stage":"housed","place":"makkah","last_event":"HousingCheckedIn"}

# The change feed: the mission's events from the registration on, read until the check-in.
told = []
headers = {"Authorization": f"Bearer {os.environ['MISSION']}"}
with api.stream("GET", "/feed", params={"after": registered["position"] - 1}, headers=headers) as feed:
    for line in feed.iter_lines():
        if line.startswith("event: "):
            told.append(line.removeprefix("event: "))
        if told[-1:] == ["HousingCheckedIn"]:
            break
show(told)
# ["Registered","PlaceTaken","PackageContracted","VisaRequested","VisaIssued","FlightBooked","ArrivedAtPort","EntryCleared","CustomsCleared","ReceivedAtPort","BusAssigned","Boarded","TransferCompleted","HousingCheckedIn"]

# An auditor's proof of the check-in, checked offline with the public keys alone (check_proof.py).
post("AUDITOR", "/audit/checkpoints", {})
Path("proof.json").write_bytes(get("AUDITOR", "/audit/proof", position=housed).content)
Path("keys.json").write_bytes(get("AUDITOR", "/audit/keys").content)
check = Path(__file__).with_name("check_proof.py")
print(subprocess.run([sys.executable, check, "proof.json", "keys.json"], check=True, capture_output=True,
                     text=True).stdout.strip())  # fmt: skip
# OK: position … is in the ledger as signed at …

# An analyst's export of season 1446, downloaded, read in DuckDB (on the demo's store: its simulated season).
export = post("ANALYST", "/exports", {"format": "parquet", "season": 1446})["export_id"]
while (progress := get("ANALYST", f"/exports/{export}").json())["state"] != "done":
    time.sleep(0.5)
for file in progress["files"]:
    Path("export", file["name"]).parent.mkdir(parents=True, exist_ok=True)
    Path("export", file["name"]).write_bytes(get("ANALYST", f"/exports/{export}/files/{file['name']}").content)
print(duckdb.sql("SELECT stage, count(*) FROM 'export/journey_status.parquet' GROUP BY stage").fetchall())
# [('housed', 1)]
