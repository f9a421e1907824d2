# A bus from the port to Makkah, and the pilgrim ($JOURNEY, pilgrim.sh) housed in the building ($BUILDING,
# market.sh): the car syndicate (naqaba) schedules the trip, seats and boards the pilgrim, records the bus leaving
# and arriving; road security records it at a checkpoint; the company checks the pilgrim in.
. "$(dirname "${BASH_SOURCE[0]}")/api.sh"

TRIP=$(post "$NAQABA" /trips '{"occurred_at": "2025-04-30T05:00:00Z", "operator": "Saptco", "bus_plate": "KSA 4821",
  "origin": "JED-HAJJ", "destination": "makkah", "departs_at": "2025-04-30T09:00:00Z", "capacity": 45,
  "expected_arrival": "2025-04-30T10:30:00Z"}' | jq -r .aggregate_id)
step "$NAQABA" /journeys/$JOURNEY/bus-assigned '{"occurred_at": "2025-04-30T08:00:00Z", "trip_id": "'"$TRIP"'"}'
# {"event":"BusAssigned"}
step "$NAQABA" /journeys/$JOURNEY/boarded '{"occurred_at": "2025-04-30T08:45:00Z", "trip_id": "'"$TRIP"'"}'
# {"event":"Boarded"}
step "$NAQABA" /trips/$TRIP/trip-departed '{"occurred_at": "2025-04-30T09:00:00Z"}'
# {"event":"TripDeparted"}
step "$ROAD_SECURITY" /trips/$TRIP/checkpoint-passed '{"occurred_at": "2025-04-30T09:40:00Z", "checkpoint": "Shumaisi"}'
# {"event":"CheckpointPassed"}
step "$NAQABA" /trips/$TRIP/trip-arrived '{"occurred_at": "2025-04-30T10:30:00Z"}'
# {"event":"TripArrived"}
step "$NAQABA" /journeys/$JOURNEY/transfer-completed '{"occurred_at": "2025-04-30T10:35:00Z", "trip_id": "'"$TRIP"'"}'
# {"event":"TransferCompleted"}
HOUSED=$(post "$COMPANY" /journeys/$JOURNEY/housing-checked-in '{"occurred_at": "2025-04-30T11:00:00Z",
  "site": "makkah", "building": "Aziziyah Tower 7", "building_id": "'"$BUILDING"'"}' | jq -r .position)

# Read-your-writes: the mission reads the journey once the views have the check-in's position.
get "$MISSION" "/journeys/$JOURNEY?min_position=$HOUSED" | jq -c '{stage, place, last_event}'
# {"stage":"housed","place":"makkah","last_event":"HousingCheckedIn"}
