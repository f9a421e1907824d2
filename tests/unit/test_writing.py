"""The write pipeline's pause of the cycle collector (hajj_ledger/writing.py)."""

from __future__ import annotations

import gc
import time
import weakref
from collections.abc import Iterator

import pytest

from hajj_ledger import writing
from hajj_ledger.writing import collector_paused


class Node:
    me: Node


@pytest.fixture(autouse=True)
def collector_as_it_was() -> Iterator[None]:
    assert gc.isenabled()
    yield
    gc.unfreeze()
    assert gc.isenabled()


def cycle_made_in_a_batch() -> weakref.ref[Node]:
    with collector_paused(set_aside=True):
        assert not gc.isenabled()
        node = Node()
        node.me = node  # garbage only the cycle collector can free
        return weakref.ref(node)


def test_a_batch_sets_aside_what_it_left_and_the_minutes_pass_collects_its_cycles(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(writing, "_collected_at", time.monotonic())
    left = cycle_made_in_a_batch()
    gc.collect(1)  # a young pass, as allocations trigger: what the batch left is not in it
    assert left() is not None
    monkeypatch.setattr(writing, "_collected_at", time.monotonic() - writing.COLLECT_SECONDS - 1)
    with collector_paused(set_aside=True):
        pass
    assert left() is None


def test_a_small_batch_leaves_its_cycles_to_the_collector_as_usual() -> None:
    with collector_paused():
        node = Node()
        node.me = node
        left = weakref.ref(node)
    del node
    gc.collect(0)
    assert left() is None


def test_what_a_batch_leaves_unreferenced_is_freed_at_once() -> None:
    with collector_paused(set_aside=True):
        node = Node()
        freed = weakref.ref(node)
    del node
    assert freed() is None  # reference counting frees it: only cycles wait for the pass
