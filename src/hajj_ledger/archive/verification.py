"""A season's archive checked alone: its manifest's signature, every file's SHA-256 and row count, and its events
against the chain it carries, from a signed checkpoint before the season's first event to the one signed at its
last. Everything is read again from the archive's place, never from memory.

The events are linked the way the verification of the store links them (hajj_ledger.audit.verification): each
event's digest, recomputed from its stored bytes, must be the digest the chain sealed at its position, and the
chain's links must reach the head of every signed checkpoint on the way.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from hajj_ledger.archive.target import MANIFEST, ArchiveError, Target
from hajj_ledger.audit.links import GENESIS, Checkpoint
from hajj_ledger.audit.manifests import manifest_signature_problem
from hajj_ledger.audit.signing import PublicKeys

FORMAT = "hajj-ledger season archive v1"
EVENTS = "events.parquet"
RECEIPTS = "receipts.parquet"
CHAIN = "chain.parquet"
CHECKPOINTS = "checkpoints.parquet"
PIECE = 40  # a link's input after the previous link: the position (8 bytes) and the digest (32)
PARALLEL_FROM = 500_000  # events from which an archive's events are hashed by worker processes
WORKERS = 2


@dataclass
class Verdict:
    """What the check of an archive found: nothing, if it is exactly the season the chain sealed."""

    season: int = 0
    events: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def told(self, url: str, *, as_json: bool) -> str:
        """The verdict as the command line says it."""
        if as_json:
            return json.dumps({"ok": self.ok, "season": self.season, "events": self.events,
                               "seconds": round(self.seconds, 3), "problems": self.problems})  # fmt: skip
        if not self.ok:
            return "\n".join(self.problems)
        rate = self.events / self.seconds if self.seconds else 0.0
        return (f"OK: season {self.season}'s archive at {url} is exactly what the chain sealed: {self.events:,} "
                f"events checked in {self.seconds:.1f} s ({rate:,.0f} events/s).")  # fmt: skip


def verify_archive(url: str, public: PublicKeys) -> Verdict:
    started = time.perf_counter()
    verdict = Verdict()
    target = Target(url)
    try:
        manifest = target.read_json(MANIFEST)
    except ArchiveError as error:
        verdict.problems.append(str(error))
        return verdict
    verdict.season = int(manifest.get("season", 0))
    why = manifest_signature_problem(manifest, public)
    if why is not None or manifest.get("format") != FORMAT:
        verdict.problems.append(f"{MANIFEST}: {why or 'not a season archive manifest'}")
        return verdict
    for name, entry in manifest["files"].items():
        if not target.exists(name):
            verdict.problems.append(f"{name}: missing")
        elif target.sha256(name) != entry["sha256"]:
            verdict.problems.append(f"{name}: differs from the file archived (SHA-256)")
    if verdict.problems:
        return verdict
    try:
        verdict.events = _check_chain(target, manifest, public, verdict.problems)
    except (OSError, KeyError, ValueError) as error:  # a file the manifest vouches for, yet unreadable: say which
        verdict.problems.append(f"{url}: cannot be read as an archive ({error})")
    verdict.seconds = time.perf_counter() - started
    return verdict


def _checkpoints(target: Target, public: PublicKeys, problems: list[str]) -> dict[int, Checkpoint]:
    found: dict[int, Checkpoint] = {}
    for batch in target.batches(CHECKPOINTS):
        for row in batch.to_pylist():
            checkpoint = Checkpoint(row["position"], row["head"], row["signed_at"], row["key_id"], row["signature"])
            why = public.check(checkpoint.key_id, checkpoint.message(), checkpoint.signature)
            if why is None:
                found[checkpoint.position] = checkpoint
            else:
                problems.append(f"{CHECKPOINTS}: checkpoint {checkpoint.position}: {why}")
    return found


def _check_chain(target: Target, manifest: dict[str, Any], public: PublicKeys, problems: list[str]) -> int:
    """Link the chain's digests from the start to the season's checkpoint, each of the season's events checked
    against the digest sealed at its position; returns the events checked."""
    chain = manifest["chain"]
    trusted = _checkpoints(target, public, problems)
    season_checkpoint = chain["checkpoint"]
    end = trusted.get(season_checkpoint["position"])
    if end is None or end.head.hex() != season_checkpoint["head"]:
        problems.append(
            f"{CHECKPOINTS}: no signed checkpoint at the season's last position {season_checkpoint['position']}"
        )
        return 0
    start = chain["start"]
    begun = trusted.get(start["position"]) if start["position"] is not None else None
    if start["position"] is not None and (begun is None or begun.head.hex() != start["head"]):
        problems.append(f"{CHECKPOINTS}: no signed checkpoint at the chain's start {start['position']}")
        return 0
    link = bytes.fromhex(start["head"]) if start["position"] is not None else GENESIS
    due = sorted(p for p in trusted if start["position"] is None or p > start["position"])
    events = _events(target)
    pending: tuple[np.ndarray, np.ndarray] | None = next(events, None)
    checked = last = 0
    for batch in target.batches(CHAIN):
        positions = batch.column(0).to_numpy()
        digests = np.frombuffer(b"".join(batch.column(1).to_pylist()), np.uint8).reshape(-1, 32)
        pieces = np.hstack((positions.astype(">i8").view(np.uint8).reshape(-1, 8), digests)).tobytes()
        # The season's events in this stretch of the chain, each matched with the digest sealed at its position.
        while pending is not None and len(pending[0]) and pending[0][0] <= positions[-1]:
            at_positions, event_digests = pending
            upto = int(np.searchsorted(at_positions, positions[-1], side="right"))
            at = at_positions[:upto]
            index = np.minimum(np.searchsorted(positions, at), len(positions) - 1)
            sealed = positions[index] == at
            same = sealed & (digests[index] == event_digests[:upto]).all(axis=1)
            for k in np.flatnonzero(~same)[:100]:
                problems.append(
                    f"{EVENTS}: position {int(at[k])} is not in the chain" if not sealed[k] else
                    f"{EVENTS}: the event at position {int(at[k])} differs from the one the chain sealed"
                )  # fmt: skip
            if len(problems) > 100:
                return checked
            checked += upto
            rest = (at_positions[upto:], event_digests[upto:])
            pending = rest if len(rest[0]) else next(events, None)
        link, due = _link(link, pieces, positions, due, trusted, problems)
        last = int(positions[-1])
    if pending is not None and len(pending[0]):
        problems.append(f"{EVENTS}: position {int(pending[0][0])} is beyond the chain archived")
    if last != end.position or link != end.head:
        problems.append(f"{CHAIN}: does not chain to the head signed at the season's last position {end.position}")
    events_entry = manifest["events"]
    if checked != events_entry["count"]:
        problems.append(f"{EVENTS}: {checked:,} events; the manifest says {events_entry['count']:,}")
    return checked


def _link(
    link: bytes,
    pieces: bytes,
    positions: np.ndarray,
    due: list[int],
    trusted: dict[int, Checkpoint],
    problems: list[str],
) -> tuple[bytes, list[int]]:
    """`link` carried over a batch of the chain, checked against each signed checkpoint inside it."""
    sha256 = hashlib.sha256
    done = 0
    while due and due[0] <= positions[-1]:
        upto = int(np.searchsorted(positions, due[0], side="right"))
        for offset in range(done * PIECE, upto * PIECE, PIECE):
            link = sha256(link + pieces[offset : offset + PIECE]).digest()
        done = upto
        if link != trusted[due[0]].head:
            problems.append(f"{CHAIN}: the links do not reach the head signed at position {due[0]}")
        due = due[1:]
    for offset in range(done * PIECE, len(positions) * PIECE, PIECE):
        link = sha256(link + pieces[offset : offset + PIECE]).digest()
    return link, due


def _events(target: Target) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The archived events a row group at a time: their positions and each one's digest of its stored bytes. A large
    archive's are hashed by worker processes, a few row groups ahead, while this one links the chain."""
    with target.fs.open_input_file(target.path(EVENTS)) as file:
        metadata = pq.ParquetFile(file).metadata
    groups, rows = metadata.num_row_groups, metadata.num_rows
    if rows < PARALLEL_FROM:
        yield from (_digested(target.url, group) for group in range(groups))
        return
    with ProcessPoolExecutor(WORKERS, mp_context=get_context("spawn")) as workers:
        ahead: deque[Future[tuple[np.ndarray, np.ndarray]]] = deque()
        for group in range(groups):
            ahead.append(workers.submit(_digested, target.url, group))
            if len(ahead) > 2 * WORKERS:
                yield ahead.popleft().result()
        while ahead:
            yield ahead.popleft().result()


def _digested(url: str, group: int) -> tuple[np.ndarray, np.ndarray]:
    """One row group of the events: positions, and each event's digest (event_digest, by column where it can)."""
    target = Target(url)
    with target.fs.open_input_file(target.path(EVENTS)) as file:
        batch = pq.ParquetFile(file).read_row_group(group)
    positions = batch.column("position").to_numpy()
    count = len(positions)
    ids = batch.column("originator_id").combine_chunks()
    id_bytes = np.frombuffer(ids.buffers()[1], np.uint8)[ids.offset * 16 : (ids.offset + count) * 16].tobytes()
    versions = batch.column("originator_version").to_numpy().astype(">u8").tobytes()
    prefixes: dict[str, bytes] = {}
    for topic in batch.column("topic").unique().to_pylist():
        name = topic.encode()
        prefixes[topic] = len(name).to_bytes(2, "big") + name
    sha256 = hashlib.sha256
    digests = b"".join(
        [
            sha256(prefixes[topic] + id_bytes[16 * k : 16 * k + 16] + versions[8 * k : 8 * k + 8] + state).digest()
            for k, (topic, state) in enumerate(
                zip(batch.column("topic").to_pylist(), batch.column("state").to_pylist(), strict=True)
            )
        ]
    )
    return positions, np.frombuffer(digests, np.uint8).reshape(-1, 32)
