# An auditor's proof: the check-in ($HOUSED, bus.sh) sealed into the hash chain under a signed checkpoint, then
# checked offline with nothing but the public keys (check_proof.py).
. "$(dirname "${BASH_SOURCE[0]}")/api.sh"

post "$AUDITOR" /audit/checkpoints '' | jq -c '{position: (.position >= '"$HOUSED"')}'
# {"position":true}
get "$AUDITOR" "/audit/proof?position=$HOUSED" > proof.json
get "$AUDITOR" /audit/keys > keys.json
python3 "$EXAMPLES/check_proof.py" proof.json keys.json
# OK: position … is in the ledger as signed at …
