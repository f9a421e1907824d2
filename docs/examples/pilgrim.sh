# A pilgrim, from registration to the port on the season's first day of arrivals: the mission registers it,
# contracts it on the signed contract ($CONTRACT, market.sh) and asks for its visa; the Ministry of Foreign Affairs
# issues it; the pilgrim lands at Jeddah, where civil aviation (gaca), passports (jawazat), customs and the agents
# office (wukala) each record their step.
. "$(dirname "${BASH_SOURCE[0]}")/api.sh"

PILGRIM=$(python3 -c 'import uuid; print(uuid.uuid4())')   # a pseudonymous id: never a passport number
REGISTERED=$(post "$MISSION" /journeys '{"pilgrim_id": "'"$PILGRIM"'", "season": 1446, "country": "IDN",
  "occurred_at": "2025-04-01T08:00:00Z"}')
JOURNEY=$(echo "$REGISTERED" | jq -r .aggregate_id)
step "$MISSION" /journeys/$JOURNEY/package-contracted '{"occurred_at": "2025-04-01T09:00:00Z",
  "contract_id": "'"$CONTRACT"'"}'
# {"event":"PackageContracted"}
step "$MISSION" /journeys/$JOURNEY/visa-requested '{"occurred_at": "2025-04-01T10:00:00Z"}'
# {"event":"VisaRequested"}
step "$MOFA" /journeys/$JOURNEY/visa-issued '{"occurred_at": "2025-04-03T08:00:00Z", "valid_until": "2025-07-31T00:00:00Z"}'
# {"event":"VisaIssued"}
step "$MISSION" /journeys/$JOURNEY/flight-booked '{"occurred_at": "2025-04-04T08:00:00Z", "direction": "arrival",
  "flight": "GA8201", "port": "JED-HAJJ", "scheduled_at": "2025-04-30T06:00:00Z"}'
# {"event":"FlightBooked"}

# The first day of arrivals (30 April 2025, 2 Dhu al-Qadah 1446).
step "$GACA" /journeys/$JOURNEY/arrived-at-port '{"occurred_at": "2025-04-30T06:30:00Z", "port": "JED-HAJJ",
  "mode": "air", "flight": "GA8201"}'
# {"event":"ArrivedAtPort"}
step "$JAWAZAT" /journeys/$JOURNEY/entry-cleared '{"occurred_at": "2025-04-30T07:00:00Z", "port": "JED-HAJJ"}'
# {"event":"EntryCleared"}
step "$CUSTOMS" /journeys/$JOURNEY/customs-cleared '{"occurred_at": "2025-04-30T07:20:00Z", "port": "JED-HAJJ"}'
# {"event":"CustomsCleared"}
step "$WUKALA" /journeys/$JOURNEY/received-at-port '{"occurred_at": "2025-04-30T07:40:00Z", "port": "JED-HAJJ"}'
# {"event":"ReceivedAtPort"}
