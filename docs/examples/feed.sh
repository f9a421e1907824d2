# The change feed (Server-Sent Events): the mission is told of its pilgrim's steps as they are recorded. From the
# registration's position ($REGISTERED, pilgrim.sh); the stream never ends, so curl stops reading after 3 s.
. "$(dirname "${BASH_SOURCE[0]}")/api.sh"

AFTER=$(( $(echo "$REGISTERED" | jq -r .position) - 1 ))
(curl -sN --max-time 3 "$API/feed?after=$AFTER" -H "Authorization: Bearer $MISSION" || [ $? = 28 ]) \
  | sed -n 's/^event: \([A-Za-z]*\).*/\1/p' | jq -Rcs 'split("\n") | map(select(. != ""))'
# ["Registered","PlaceTaken","PackageContracted","VisaRequested","VisaIssued","FlightBooked","ArrivedAtPort","EntryCleared","CustomsCleared","ReceivedAtPort","BusAssigned","Boarded","TransferCompleted","HousingCheckedIn"]
