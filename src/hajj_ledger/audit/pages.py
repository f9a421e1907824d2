"""Rows of the log a page at a time, and a page by column (`Packed`): what the chain's tables hand the export and
the archive."""

from __future__ import annotations

import sys
from array import array
from collections.abc import Sequence
from typing import NamedTuple

EventRow = tuple[int, bytes, int, str, bytes]  # position, originator id (16 bytes), version, topic, state
DigestedRow = tuple[int, bytes, int, str, bytes, bytes]  # an EventRow and its digest


class Packed(NamedTuple):
    """A page of DigestedRows by column, each column one byte string: numbers big-endian, 8 bytes (positions,
    versions) or 4 (the lengths of the topics and of the states, which follow each other in `topics` and `states`);
    ids of 16 bytes, digests of 32."""

    size: int  # events
    positions: bytes
    ids: bytes
    versions: bytes
    topic_lengths: bytes
    topics: bytes
    state_lengths: bytes
    states: bytes
    digests: bytes

    @classmethod
    def of(cls, rows: Sequence[DigestedRow]) -> Packed:
        topics = [r[3].encode() for r in rows]
        return cls(
            len(rows),
            b"".join(r[0].to_bytes(8, "big", signed=True) for r in rows),
            b"".join(r[1] for r in rows),
            b"".join(r[2].to_bytes(8, "big") for r in rows),
            b"".join(len(t).to_bytes(4, "big") for t in topics),
            b"".join(topics),
            b"".join(len(r[4]).to_bytes(4, "big") for r in rows),
            b"".join(r[4] for r in rows),
            b"".join(r[5] for r in rows),
        )

    def in_order(self) -> bool:
        """Whether the positions rise from each event to the next."""
        numbers = array("q", self.positions)
        if sys.byteorder == "little":
            numbers.byteswap()  # packed big-endian
        listed = numbers.tolist()
        return listed == sorted(listed)  # positions are unique: sorted is rising

    def rows(self) -> list[DigestedRow]:
        numbers = [int.from_bytes(self.positions[i : i + 8], "big", signed=True) for i in range(0, self.size * 8, 8)]
        versions = [int.from_bytes(self.versions[i : i + 8], "big") for i in range(0, self.size * 8, 8)]
        rows: list[DigestedRow] = []
        topic_at = state_at = 0
        for index in range(self.size):
            topic_end = topic_at + int.from_bytes(self.topic_lengths[index * 4 : index * 4 + 4], "big")
            state_end = state_at + int.from_bytes(self.state_lengths[index * 4 : index * 4 + 4], "big")
            rows.append((
                numbers[index], self.ids[index * 16 : index * 16 + 16], versions[index],
                self.topics[topic_at:topic_end].decode(), self.states[state_at:state_end],
                self.digests[index * 32 : index * 32 + 32],
            ))  # fmt: skip
            topic_at, state_at = topic_end, state_end
        return rows
