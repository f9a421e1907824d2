# check_proof.py PROOF.json KEYS.json: checks one event against a signed checkpoint, trusting only the keys.
import base64
import hashlib
import json
import sys
import uuid
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

proof, keys = (json.loads(Path(name).read_text()) for name in sys.argv[1:3])
event, checkpoint = proof["event"], proof["checkpoint"]
topic = event["topic"].encode()
event_digest = hashlib.sha256(
    len(topic).to_bytes(2, "big")
    + topic
    + uuid.UUID(event["originator_id"]).bytes
    + event["originator_version"].to_bytes(8, "big")
    + base64.b64decode(event["state"])
).digest()
link = bytes.fromhex(proof["previous_link"])
for position, digest in [[proof["position"], event_digest.hex()], *proof["following"]]:
    link = hashlib.sha256(link + position.to_bytes(8, "big", signed=True) + bytes.fromhex(digest)).digest()
assert position == checkpoint["position"] and link.hex() == checkpoint["head"], "the event is not in the chain"
message = "hajj-ledger checkpoint v1\n{position}\n{head}\n{signed_at}\n{key_id}\n".format(**checkpoint).encode()
public_key = Ed25519PublicKey.from_public_bytes(base64.b64decode(keys["keys"][checkpoint["key_id"]]))
public_key.verify(base64.b64decode(checkpoint["signature"]), message)  # raises InvalidSignature if forged
print(f"OK: position {proof['position']} is in the ledger as signed at {checkpoint['signed_at']}")
