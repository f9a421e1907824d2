"""The verification's linking: a page of events that all matched the chain, linked from its packed pieces, gives
what the same page checked row by row gives, wherever the trusted checkpoints fall."""

from __future__ import annotations

import hashlib
from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from hajj_ledger.audit.links import GENESIS
from hajj_ledger.audit.verification import Linked, check_run


def _link(link: bytes, piece: bytes) -> bytes:
    return hashlib.sha256(link + piece).digest()


@given(
    positions=st.lists(st.integers(1, 500), min_size=0, max_size=60, unique=True).map(sorted),
    cuts=st.lists(st.integers(0, 60), max_size=4),
    marks=st.lists(st.integers(0, 520), max_size=6, unique=True).map(sorted),
    forged=st.sets(st.integers(0, 5)),
)
def test_packed_pages_link_as_rows_do(
    positions: list[int], cuts: list[int], marks: list[int], forged: set[int]
) -> None:
    pieces = [p.to_bytes(8, "big", signed=True) + hashlib.sha256(str(p).encode()).digest() for p in positions]
    heads, link, at = {}, GENESIS, 0
    for mark in marks:  # the true link after the events up to each checkpoint, some of them forged
        while at < len(positions) and positions[at] <= mark:
            link, at = _link(link, pieces[at]), at + 1
        heads[mark] = link
    inside = [(m, b"x" * 32 if i in forged else heads[m]) for i, m in enumerate(marks)]
    bounds = sorted({0, len(positions), *(min(c, len(positions)) for c in cuts)})
    spans = list(pairwise(bounds))
    none: list[int] = []  # no sealed position without its event
    as_rows: list[tuple[Linked, list[int]]] = [
        ([(positions[i], pieces[i], None, False) for i in range(a, b)], none) for a, b in spans
    ]
    as_bytes: list[tuple[Linked, list[int]]] = [(b"".join(pieces[a:b]), none) for a, b in spans]
    by_rows = check_run(as_rows, GENESIS, inside, 10**6)
    by_bytes = check_run(as_bytes, GENESIS, inside, 10**6)
    assert (by_bytes.mismatched, by_bytes.events, by_bytes.last_event) == (
        by_rows.mismatched,
        by_rows.events,
        by_rows.last_event,
    )
    assert by_rows.mismatched == [m for i, m in enumerate(marks) if i in forged]
