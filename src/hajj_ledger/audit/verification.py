"""The verification's analysis: the log read back in runs from trusted checkpoints, linked again, and what each
disagreement with the chain means (changed, reordered, inserted, deleted, truncated, rewritten).

It reads nothing itself: the chain's tables (chain_sql) page the log and the sealed digests in.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from hajj_ledger.audit.links import FIRST, GENESIS, Checkpoint


@dataclass(frozen=True)
class Finding:
    position: int
    kind: str  # changed, deleted, inserted, reordered, truncated, signature, unknown-key, rewritten
    detail: str


@dataclass
class Report:
    sealed_head: int = 0
    events: int = 0  # events checked against the chain
    unsealed: int = 0  # events after the sealed head: not covered yet
    checkpoints: int = 0
    last_checkpoint: int = 0  # the position of the latest checkpoint (0: none)
    unchecked_checkpoints: int = 0  # checkpoints whose signature was not checked: no public key was given
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def first(self) -> Finding | None:
        return min(self.findings, key=lambda f: f.position) if self.findings else None


# An event checked against the chain: its position, its position and digest as the link takes them, the sealed
# digest where it differs (None where it matches), and whether the chain lacks the position.
Checked = tuple[int, bytes, bytes | None, bool]
# A page of events to link: checked one by one, or, where every event matched its sealed digest and none is missing,
# the pieces the link takes (position and digest, 40 bytes each) end to end.
Linked = list[Checked] | bytes
PIECE = 40
Due = tuple[int, bytes] | None  # the next trusted checkpoint to check the link against (position and head)

# A run of the log to check: positions after `start` up to `end`, the link at `start`, and the trusted
# checkpoints inside it (position and head).
Run = tuple[int, int, bytes, list[tuple[int, bytes]]]
RUN_POSITIONS = 100_000


def runs(low: int, high: int, trusted: Sequence[Checkpoint]) -> list[Run]:
    runs: list[Run] = []
    start, link, inside = low, GENESIS, []
    for checkpoint in trusted:
        inside.append((checkpoint.position, checkpoint.head))
        if checkpoint.position - start >= RUN_POSITIONS:
            runs.append((start, checkpoint.position, link, inside))
            start, link, inside = checkpoint.position, checkpoint.head, []
    runs.append((start, max(high, start), link, inside))
    return runs


@dataclass
class RunResult:
    events: int = 0
    unsealed: int = 0
    last_event: int = FIRST
    changed: dict[int, tuple[bytes, bytes]] = field(default_factory=dict)  # position: (found, sealed) digests
    gone: list[int] = field(default_factory=list)  # sealed positions with no event
    inserted: list[int] = field(default_factory=list)  # events at positions never sealed
    mismatched: list[int] = field(default_factory=list)  # checkpoints whose head the events do not hash to


def conclude(found: Sequence[RunResult], trusted: Sequence[Checkpoint], report: Report) -> None:
    """Name what happened at each disagreeing position. A swap shows as two positions each holding the other's
    sealed event; sealed positions missing after the last event are a truncated tail; a checkpoint whose head
    the log no longer hashes to, with every event matching its stored digest, means both were rewritten."""
    changed = {at: pair for result in found for at, pair in result.changed.items()}
    gone = [at for result in found for at in result.gone]
    last_event = max(result.last_event for result in found)
    report.events = sum(result.events for result in found)
    report.unsealed = sum(result.unsealed for result in found)
    sealed_at = {sealed: at for at, (_, sealed) in changed.items()}
    for at, (digest, _) in changed.items():
        other = sealed_at.get(digest)
        if other is not None and other != at:
            report.findings.append(Finding(at, "reordered", f"holds the event sealed at position {other}"))
        else:
            report.findings.append(Finding(at, "changed", "the event's stored bytes differ from those sealed"))
    report.findings += [Finding(at, "inserted", "an event the chain never sealed") for r in found for at in r.inserted]
    tail = [at for at in gone if at > last_event]
    if tail:
        report.findings.append(Finding(tail[0], "truncated", f"{len(tail)} sealed events missing from the end"))
    report.findings += [Finding(at, "deleted", "a sealed event is missing") for at in gone if at <= last_event]
    in_events = sorted(f.position for f in report.findings if f.kind not in ("signature", "unknown-key"))
    starts = [FIRST, *(c.position for c in trusted)]
    previous = {c.position: starts[i] for i, c in enumerate(trusted)}  # where the run to each checkpoint began
    for position in (at for result in found for at in result.mismatched):
        if bisect.bisect_right(in_events, position) > bisect.bisect_right(in_events, previous[position]):
            continue  # a finding in the events since the previous checkpoint explains it
        if position > last_event:
            if tail:
                continue  # the truncated tail explains it
            report.findings.append(
                Finding(last_event + 1, "truncated", f"the log ends at {last_event}; a checkpoint at {position}")
            )
        else:
            report.findings.append(
                Finding(position, "rewritten", f"the log up to {position} does not hash to the head signed there")
            )
    report.findings.sort(key=lambda f: f.position)


def check_run(
    pages: Iterable[tuple[Linked, list[int]]], link: bytes, inside: Sequence[tuple[int, bytes]], head: int
) -> RunResult:
    """Link a run's events, read as `pages` (each event checked against the chain, and the sealed positions with no
    event), from `link`, the link at the run's start: what differs, what was never sealed, what is gone, and which
    of the trusted checkpoints `inside` it (position and head) the events no longer hash to."""
    result = RunResult()
    checkpoints = iter(inside)
    due = next(checkpoints, None)
    for rows, gone in pages:
        if isinstance(rows, bytes):  # every event matched: linked in one loop, stopping at each checkpoint
            link, due = _link_packed(rows, link, due, checkpoints, result)
        else:
            link, due = _link_rows(rows, link, due, checkpoints, head, result)
        result.gone += gone
    while due is not None:
        if link != due[1]:
            result.mismatched.append(due[0])
        due = next(checkpoints, None)
    return result


def _link_rows(
    rows: list[Checked], link: bytes, due: Due, checkpoints: Iterator[tuple[int, bytes]], head: int, result: RunResult
) -> tuple[bytes, Due]:
    """A page checked row by row linked onto `link`, what differs noted and each checkpoint before its last event
    checked on the way: the link after it, and the checkpoint now due."""
    sha256 = hashlib.sha256
    for at, piece, differs, missing in rows:
        while due is not None and due[0] < at:
            if link != due[1]:
                result.mismatched.append(due[0])
            due = next(checkpoints, None)
        result.last_event = at
        if missing and at > head:
            result.unsealed += 1
            continue
        link = sha256(link + piece).digest()  # next_link, inlined: the piece is position and digest
        result.events += 1
        if missing:
            result.inserted.append(at)
        elif differs is not None and len(result.changed) < 100_000:
            result.changed[at] = (piece[8:], bytes(differs))
    return link, due


def _link_packed(
    pieces: bytes, link: bytes, due: Due, checkpoints: Iterator[tuple[int, bytes]], result: RunResult
) -> tuple[bytes, Due]:
    """A packed page linked onto `link`, each checkpoint before its last event checked on the way: the link after
    it, and the checkpoint now due."""
    positions = np.frombuffer(pieces, ">i8")[:: PIECE // 8]
    done = 0
    while due is not None and len(positions) and due[0] < positions[-1]:
        upto = max(done, int(np.searchsorted(positions, due[0], side="right")))
        link, done = _linked(link, pieces, done, upto), upto
        if link != due[1]:
            result.mismatched.append(due[0])
        due = next(checkpoints, None)
    if len(positions):
        result.events += len(positions)
        result.last_event = int(positions[-1])
    return _linked(link, pieces, done, len(positions)), due


def _linked(link: bytes, pieces: bytes, start: int, end: int) -> bytes:
    """`link` carried over the pieces from the `start`-th to before the `end`-th."""
    sha256 = hashlib.sha256
    for offset in range(start * PIECE, end * PIECE, PIECE):
        link = sha256(link + pieces[offset : offset + PIECE]).digest()
    return link
