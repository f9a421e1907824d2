PILGRIM=$(python3 -c 'import uuid; print(uuid.uuid4())')   # a pseudonymous id: never a passport number
REGISTERED=$(curl -s http://127.0.0.1:8000/v1/journeys -H "Authorization: Bearer $MISSION" \
  -H 'Content-Type: application/json' \
  -d '{"pilgrim_id": "'"$PILGRIM"'", "season": 1446, "country": "IDN", "occurred_at": "2025-05-01T08:00:00Z"}')
echo "$REGISTERED"
# {"command_id":"…","event":"Registered","aggregate_id":"…","position":…,"events":["Registered"],"repeated":false}
JOURNEY=$(echo "$REGISTERED" | jq -r .aggregate_id)
POSITION=$(echo "$REGISTERED" | jq -r .position)

# Read-your-writes: min_position waits (up to 2 s) until the views have the write at that position.
curl -s "http://127.0.0.1:8000/v1/journeys/$JOURNEY?min_position=$POSITION" -H "Authorization: Bearer $MISSION" \
  | jq -c '{stage, mission_id, last_event}'
# {"stage":"registered","mission_id":"mission-IDN-00013","last_event":"Registered"}

# A step out of order is refused, and changes nothing: the answer names the stage and the steps allowed.
curl -s "http://127.0.0.1:8000/v1/journeys/$JOURNEY/visa-requested" -H "Authorization: Bearer $MISSION" \
  -H 'Content-Type: application/json' -d '{"occurred_at": "2025-05-02T08:00:00Z"}' \
  | jq -c '{status, current_stage, allowed}'
# {"status":409,"current_stage":"registered","allowed":["Cancelled","FlightBooked","IdentityRecorded","LegalHoldPlaced","PackageContracted"]}
