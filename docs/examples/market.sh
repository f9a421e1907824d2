# The market, months before the season: the municipality (amanah) licenses a building of the company, Civil
# Defence inspects it, the company offers its beds to missions, a mission proposes a contract, the company signs.
. "$(dirname "${BASH_SOURCE[0]}")/api.sh"

BUILDING=$(post "$AMANAH" /buildings '{"occurred_at": "2025-01-05T08:00:00Z", "company_id": "company-012",
  "city": "makkah", "district": "Aziziyah", "beds": 40, "licence_valid_until": "2025-12-31T00:00:00Z"}' | jq -r .aggregate_id)
step "$CIVIL_DEFENCE" /buildings/$BUILDING/inspection-passed '{"occurred_at": "2025-01-06T08:00:00Z", "findings": "compliant"}'
# {"event":"InspectionPassed"}

OFFER=$(post "$COMPANY" /offers '{"occurred_at": "2025-01-07T08:00:00Z", "season": 1446, "kind": "makkah_housing",
  "site": "makkah", "places": 40, "price_sar": 9000, "valid_from": "2025-01-07T00:00:00Z",
  "valid_until": "2025-07-31T00:00:00Z", "building_ids": ["'"$BUILDING"'"]}' | jq -r .aggregate_id)
CONTRACT=$(post "$MISSION" /contracts '{"occurred_at": "2025-01-08T08:00:00Z", "offer_id": "'"$OFFER"'",
  "places": 10}' | jq -r .aggregate_id)
SIGNED=$(post "$COMPANY" /contracts/$CONTRACT/sign '{"occurred_at": "2025-01-09T08:00:00Z"}')
echo "$SIGNED" | jq -c '{event, events}'
# {"event":"ContractSigned","events":["PlacesReserved","ContractSigned"]}

# The market as the mission reads it once the views have the signature (min_position): places contracted, free.
get "$MISSION" "/views/service_offers?offer_id=$OFFER&min_position=$(echo "$SIGNED" | jq .position)" \
  | jq -c '.items[] | {company_id, kind, places, contracted, free}'
# {"company_id":"company-012","kind":"makkah_housing","places":40,"contracted":10,"free":30}
