"""The export reads the stored JSON by its layout (projections/export_events.py: the stamp's fields found by counting
quotes, each key checked where it must stand). These tests hold that reading to the codec: one event of every class,
as the codec writes it, is rewritten by column exactly as event by event; and a codec that writes its keys in
another order still exports the same, and says so, rather than going several times slower without a word."""

from __future__ import annotations

import dataclasses
import logging
import types
import typing
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from enum import Enum
from typing import Any
from uuid import UUID, uuid4

import orjson
import pytest
from eventsourcing.utils import get_topic, resolve_topic

from hajj_ledger.audit.pages import DigestedRow, Packed
from hajj_ledger.domain.events import RecordedEvent
from hajj_ledger.domain.vocabulary import Role, Stamp
from hajj_ledger.projections import export_events
from hajj_ledger.projections.pseudonyms import Pseudonyms
from hajj_ledger.store import codec
from hajj_ledger.store.codec import EventCodec

NOW = datetime(2025, 5, 20, 8, 30, tzinfo=UTC)
PSEUDONYMS = Pseudonyms(bytes(range(32)))


def event_classes(base: type = RecordedEvent) -> Iterator[type[RecordedEvent]]:
    """Every event the ledger records: the classes its aggregates' catalogue rows name (as declared: not the copies
    eventsourcing makes of some)."""
    for cls in typing.cast(list[type[RecordedEvent]], base.__subclasses__()):
        if cls.__name__ in getattr(cls, "steps", {}) and resolve_topic(f"{cls.__module__}:{cls.__qualname__}") is cls:
            yield cls
        yield from event_classes(cls)


def value_of(hint: Any, name: str) -> Any:
    """A value of the type `hint`, as an aggregate's command would give it."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return value_of(next(a for a in typing.get_args(hint) if a is not type(None)), name)
    if typing.get_origin(hint) in (tuple, list):
        return typing.get_origin(hint)([value_of(typing.get_args(hint)[0], name)])
    if hint is Stamp:
        return Stamp("mission-IDN-1", Role.MISSION, NOW, uuid4(), uuid4())
    if isinstance(hint, type) and issubclass(hint, Enum):
        return next(iter(hint))
    made: dict[Any, Callable[[], Any]] = {UUID: uuid4, datetime: lambda: NOW, date: NOW.date, str: lambda: name}
    return made[hint]() if hint in made else hint(1)  # int, float, bool


def event_of(cls: type[RecordedEvent], version: int) -> RecordedEvent:
    hints = typing.get_type_hints(cls)
    envelope = {"originator_id": uuid4(), "originator_version": version, "timestamp": NOW}
    fields = {f.name: value_of(hints[f.name], f.name) for f in dataclasses.fields(cls) if f.name not in envelope}
    fields.update(envelope)
    if "originator_topic" in fields:  # a created event names its aggregate's class
        fields["originator_topic"] = get_topic(resolve_topic(get_topic(cls).rsplit(".", 1)[0]))
    return cls(**fields)


def page() -> list[DigestedRow]:
    """One event of every class, as the codec writes it, two of each (a journey's id recurs in a page)."""
    rows: list[DigestedRow] = []
    for cls in event_classes():
        for version in (1, 2):
            event = event_of(cls, version)
            stored = EventCodec().to_stored_event(event)
            digest = bytes(range(32))
            rows.append((len(rows) + 1, event.originator_id.bytes, version, stored.topic, stored.state, digest))
    return rows


def test_every_event_class_is_of_a_kind_the_page_holds() -> None:
    names = {row[3].rsplit(".", 1)[-1] for row in page()}
    assert {"Registered", "VisaIssued", "TripScheduled", "OfferPublished", "BuildingLicensed", "SeasonOpened"} <= names


def test_every_event_as_the_codec_writes_it_is_rewritten_by_column_exactly_as_event_by_event() -> None:
    rows = page()
    columns = export_events._rewritten(Packed.of(rows), PSEUDONYMS)
    assert columns is not None, "the codec writes a layout the export no longer reads: see export_events._stamps"
    assert columns.equals(export_events._decoded(rows, PSEUDONYMS))


PLAIN, DUMPS = codec._plain, orjson.dumps  # as the codec has them


def _stamp_reversed(value: Any) -> dict[str, Any]:
    return dict(reversed(PLAIN(value).items()))


def _sorted_keys(state: Any, default: Any, option: int) -> bytes:
    return DUMPS(state, default=default, option=option | orjson.OPT_SORT_KEYS)


def keys(row: DigestedRow) -> list[str]:
    """An event's keys in the order written, the stamp's after the event's."""
    state = orjson.loads(row[4])
    return [*state, *state["stamp"]]


@pytest.mark.parametrize(
    "reordered",
    [
        lambda patch: patch.setattr(codec, "_plain", _stamp_reversed),
        lambda patch: patch.setattr(orjson, "dumps", _sorted_keys),  # the codec's orjson
    ],
    ids=["the stamp's fields reversed", "every key sorted"],
)
def test_a_codec_writing_its_keys_in_another_order_exports_the_same_and_says_so(
    reordered: Callable[[pytest.MonkeyPatch], None], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The export checks every key where it reads one: a page it cannot read by column is decoded event by event,
    with the same outcome, and a warning that the layout is not the one it reads."""
    with monkeypatch.context() as patch:
        reordered(patch)
        rows = page()
    assert keys(rows[0]) != keys(page()[0])  # the order did change
    with caplog.at_level(logging.WARNING, "hajj_ledger.projections"):
        table = export_events.events_table(Packed.of(rows), PSEUDONYMS)
    assert table.equals(export_events._decoded(rows, PSEUDONYMS))
    assert [r.getMessage() for r in caplog.records] == [
        f"events 1-{len(rows)} are not laid out as the export reads the codec's JSON (has its key order changed?): "
        "decoded event by event, several times slower"
    ]
