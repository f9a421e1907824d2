"""A season's archive checked alone: its manifest's signature, every file's SHA-256 and row count, and its events
against the chain it carries, from a signed checkpoint before the season's first event to the one signed at its
last. Everything is read again from the archive's place, never from memory.

The events are linked the way the verification of the store links them (hajj_ledger.audit.verification): each
event's digest, recomputed from its stored bytes, must be the digest the chain sealed at its position, and the
chain's links must reach the head of every signed checkpoint on the way.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
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
PARALLEL_FROM = 500_000  # positions of the chain from which an archive is checked by worker processes
WORKERS = 2
STRETCHES_PER_WORKER = 4  # stretches a worker: some finish early, the others take up the slack


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
    against the digest sealed at its position; returns the events checked. The chain is linked in stretches between
    signed checkpoints, each from the head signed where it begins, by worker processes for a large archive."""
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
    heads = {p: c.head for p, c in trusted.items() if start["position"] is None or p > start["position"]}
    stretches = _stretches(target, start["position"], link, heads)
    checked, last = 0, None
    for stretch, found in zip(stretches, _checked(target.url, stretches), strict=True):
        problems.extend(found.problems[: max(0, 101 - len(problems))])
        checked += found.checked
        last = found.last if found.last is not None else last
        link = found.link
        if len(problems) > 100:
            return checked
        if stretch.until is None and found.beyond is not None:
            problems.append(f"{EVENTS}: position {found.beyond} is beyond the chain archived")
    if last != end.position or link != end.head:
        problems.append(f"{CHAIN}: does not chain to the head signed at the season's last position {end.position}")
    events_entry = manifest["events"]
    if checked != events_entry["count"]:
        problems.append(f"{EVENTS}: {checked:,} events; the manifest says {events_entry['count']:,}")
    return checked


@dataclass(frozen=True)
class Stretch:
    """Positions of the archive linked apart: those after `after` (None: from the first) up to `until` (None: to
    the last), from `link`, the head signed at `after` (or the chain's start), through the heads signed inside."""

    after: int | None
    until: int | None
    link: bytes
    heads: tuple[tuple[int, bytes], ...]

    def overlaps(self, low: int, high: int) -> bool:
        return (self.after is None or high > self.after) and (self.until is None or low <= self.until)

    def mask(self, positions: np.ndarray) -> np.ndarray:
        inside = np.ones(len(positions), bool)
        if self.after is not None:
            inside &= positions > self.after
        if self.until is not None:
            inside &= positions <= self.until
        return inside


@dataclass
class Found:
    """What a stretch's check found: its events checked, its problems, the last position of the chain in it and
    the link there, and the first event beyond its chain (which only the last stretch may have)."""

    checked: int = 0
    problems: list[str] = field(default_factory=list)
    last: int | None = None
    link: bytes = GENESIS
    beyond: int | None = None


def _stretches(target: Target, start: int | None, link: bytes, heads: dict[int, bytes]) -> list[Stretch]:
    """The archive cut at signed checkpoints into stretches of about equal size, one if it is small."""
    with target.fs.open_input_file(target.path(CHAIN)) as file:
        metadata = pq.ParquetFile(file).metadata
    due = sorted(heads)
    cuts: list[int] = []
    if metadata.num_rows >= PARALLEL_FROM:  # checkpoints come every so many positions: cut at every n-th
        parts = STRETCHES_PER_WORKER * WORKERS
        cuts = sorted({due[len(due) * k // parts] for k in range(1, parts)} - {due[-1]}) if due else []
    stretches = []
    for after, until in zip([start, *cuts], [*cuts, None], strict=True):
        inside = tuple((p, heads[p]) for p in due if (after is None or p > after) and (until is None or p <= until))
        stretches.append(Stretch(after, until, link if after == start else heads[after], inside))  # type: ignore[index]
    return stretches


def _checked(url: str, stretches: list[Stretch]) -> Iterator[Found]:
    """Each stretch checked, in order: here if there is one, else by worker processes."""
    if len(stretches) == 1:
        yield _check_stretch(url, stretches[0])
        return
    with ProcessPoolExecutor(WORKERS, mp_context=get_context("spawn")) as workers:
        yield from workers.map(_check_stretch, [url] * len(stretches), stretches)


def _check_stretch(url: str, stretch: Stretch) -> Found:
    """A stretch: each event's digest against the one sealed at its position, and the links through it."""
    target = Target(url)
    positions, digests = _chain_rows(target, stretch)
    found = Found(last=int(positions[-1]) if len(positions) else stretch.after, link=stretch.link)
    for at, event_digests in _event_digests(target, stretch):
        index = np.minimum(np.searchsorted(positions, at), max(len(positions) - 1, 0))
        sealed = positions[index] == at if len(positions) else np.zeros(len(at), bool)
        if stretch.until is None and len(positions):  # the last stretch: events after the chain's end
            past = at > positions[-1]
            if past.any():
                found.beyond = int(at[past][0]) if found.beyond is None else found.beyond
                at, event_digests, index, sealed = at[~past], event_digests[~past], index[~past], sealed[~past]
        same = sealed & (digests[index] == event_digests).all(axis=1) if len(positions) else sealed
        for k in np.flatnonzero(~same)[:101]:
            found.problems.append(
                f"{EVENTS}: position {int(at[k])} is not in the chain" if not sealed[k] else
                f"{EVENTS}: the event at position {int(at[k])} differs from the one the chain sealed"
            )  # fmt: skip
        found.checked += len(at)
        if len(found.problems) > 100:
            return found
    found.link = _link(stretch, positions, digests, found.problems)
    return found


def _link(stretch: Stretch, positions: np.ndarray, digests: np.ndarray, problems: list[str]) -> bytes:
    """The links carried through the stretch, checked against each head signed inside it."""
    pieces = np.hstack((positions.astype(">i8").view(np.uint8).reshape(-1, 8), digests)).tobytes()
    sha256 = hashlib.sha256
    link, done = stretch.link, 0
    for position, head in stretch.heads:
        upto = int(np.searchsorted(positions, position, side="right"))
        for offset in range(done * PIECE, upto * PIECE, PIECE):
            link = sha256(link + pieces[offset : offset + PIECE]).digest()
        done = max(done, upto)
        if link != head:
            problems.append(f"{CHAIN}: the links do not reach the head signed at position {position}")
    for offset in range(done * PIECE, len(positions) * PIECE, PIECE):
        link = sha256(link + pieces[offset : offset + PIECE]).digest()
    return link


def _groups(file: pq.ParquetFile, stretch: Stretch) -> list[int]:
    """The row groups that may hold positions of the stretch, by their statistics (all of them, where none)."""
    column = file.schema_arrow.get_field_index("position")
    found = []
    for group in range(file.metadata.num_row_groups):
        statistics = file.metadata.row_group(group).column(column).statistics
        known = statistics is not None and statistics.has_min_max
        if known and not stretch.overlaps(statistics.min, statistics.max):
            continue
        found.append(group)
    return found


def _chain_rows(target: Target, stretch: Stretch) -> tuple[np.ndarray, np.ndarray]:
    """The chain's positions in the stretch and the digest sealed at each."""
    with target.fs.open_input_file(target.path(CHAIN)) as file:
        parquet = pq.ParquetFile(file)
        table = parquet.read_row_groups(_groups(parquet, stretch), use_threads=False)
    positions = table.column("position").to_numpy()
    inside = stretch.mask(positions)
    column = table.column("digest").combine_chunks()
    digests = np.frombuffer(column.buffers()[1], np.uint8)[column.offset * 32 : (column.offset + len(column)) * 32]
    return positions[inside], digests.reshape(-1, 32)[inside]


def _event_digests(target: Target, stretch: Stretch) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The stretch's events a row group at a time: their positions and each one's digest of its stored bytes
    (event_digest), the bytes put together by column and only hashed one by one."""
    with target.fs.open_input_file(target.path(EVENTS)) as file:
        parquet = pq.ParquetFile(file)
        for group in _groups(parquet, stretch):
            batch = parquet.read_row_group(group, use_threads=False)  # the workers are the threads
            inside = stretch.mask(batch.column("position").to_numpy())
            if not inside.all():
                batch = batch.filter(pa.array(inside))
            yield batch.column("position").to_numpy(), _digests(batch)


def _digests(batch: pa.Table) -> np.ndarray:
    count = batch.num_rows
    topics = batch.column("topic").combine_chunks().dictionary_encode()
    names = [name.encode() for name in topics.dictionary.to_pylist()]
    prefixes = pa.array([len(name).to_bytes(2, "big") + name for name in names], pa.binary()).take(topics.indices)
    versions = batch.column("originator_version").to_numpy().astype(">u8").tobytes()
    large = pa.large_binary()  # 64-bit offsets: a row group's bytes may pass 2 GiB
    stored = pc.binary_join_element_wise(
        prefixes.cast(large),
        batch.column("originator_id").combine_chunks().cast(large),
        pa.FixedSizeBinaryArray.from_buffers(pa.binary(8), count, [None, pa.py_buffer(versions)]).cast(large),
        batch.column("state").combine_chunks().cast(large),
        pa.scalar(b"", large),
    )
    if stored.null_count:
        raise ValueError("an event with a missing field")
    offsets = np.frombuffer(stored.buffers()[1], np.int64)[stored.offset : stored.offset + count + 1].tolist()
    data = memoryview(stored.buffers()[2])
    sha256 = hashlib.sha256
    digests = b"".join([sha256(data[a:b]).digest() for a, b in itertools.pairwise(offsets)])
    return np.frombuffer(digests, np.uint8).reshape(-1, 32)
