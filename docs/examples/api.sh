# The examples' helpers, sourced by each of them: the API's address, and a call as an agency. Each agency's key is
# in a variable named by its role (MISSION, COMPANY, AMANAH, ...), as `make run` prints them.
API=${API:-http://127.0.0.1:8000/v1}
EXAMPLES=$(dirname "${BASH_SOURCE[0]}")
post() {  # post KEY PATH BODY: a write by the agency whose key it is; the answer as JSON
  curl -s "$API$2" -H "Authorization: Bearer $1" -H 'Content-Type: application/json' -d "$3"
}
get() {  # get KEY PATH: a read by the agency whose key it is
  curl -s "$API$2" -H "Authorization: Bearer $1"
}
step() {  # step KEY PATH BODY: one step; prints the event recorded, or the whole problem if it is refused
  post "$@" | jq -c 'if .event then {event} else . end'
}
