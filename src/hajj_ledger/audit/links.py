"""The hash chain's arithmetic: an event's digest, the link it makes, and a checkpoint with the bytes it signs.

Shared by the sealer (chain), its tables (chain_sql), the verification and exports' manifests, which check an
export's events against a checkpoint the same way.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any

GENESIS = bytes(32)  # the link before the first event
FIRST = -(2**63)  # below any position, forged ones included


def event_digest(topic: str, originator_id: bytes, version: int, state: bytes) -> bytes:
    """SHA-256 of an event's stored bytes: the topic (length-prefixed), the originator id's 16 bytes, the version
    (8 bytes, big-endian) and the state as stored."""
    name = topic.encode()
    return hashlib.sha256(
        b"".join((len(name).to_bytes(2, "big"), name, originator_id, version.to_bytes(8, "big"), state))
    ).digest()


def next_link(previous: bytes, position: int, digest: bytes) -> bytes:
    return hashlib.sha256(previous + position.to_bytes(8, "big", signed=True) + digest).digest()


@dataclass(frozen=True)
class Checkpoint:
    position: int
    head: bytes  # the link at `position`
    signed_at: str  # ISO 8601, UTC; kept as text so the signed bytes are exactly these
    key_id: str
    signature: bytes

    def message(self) -> bytes:
        return checkpoint_message(self.position, self.head, self.signed_at, self.key_id)

    def to_json(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "head": self.head.hex(),
            "signed_at": self.signed_at,
            "key_id": self.key_id,
            "signature": base64.b64encode(self.signature).decode(),
        }


def checkpoint_message(position: int, head: bytes, signed_at: str, key_id: str) -> bytes:
    """The bytes a checkpoint's signature covers."""
    return f"hajj-ledger checkpoint v1\n{position}\n{head.hex()}\n{signed_at}\n{key_id}\n".encode()
