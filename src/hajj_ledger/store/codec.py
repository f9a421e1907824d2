"""Events to stored bytes and back, by each event class's declared field types.

eventsourcing's default transcoder tags every UUID, datetime and custom value in the JSON and walks the state
with Python hooks; profiling a simulated season showed it as one of the largest per-event costs. Our events are
flat dataclasses of a few known types, so the state is written by orjson as plain JSON, and read back by a
converter per field, worked out once per event class from its annotations.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from datetime import date, datetime
from enum import Enum
from functools import cache
from typing import Any, cast
from uuid import UUID

import orjson
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import JSONTranscoder, Mapper, StoredEvent
from eventsourcing.utils import get_topic, register_topic, resolve_topic

from hajj_ledger.domain import journey, trip
from hajj_ledger.domain.vocabulary import Role, Stamp

Convert = Callable[[Any], Any]
_ENVELOPE = ("originator_id", "originator_version")
# Topics are stored under the modules the aggregates were first written from, before the domain had a room of its
# own: stores written before read as they were, and a filter by topic finds old and new events alike.
_STORED_MODULES = {journey.__name__: "hajj_ledger.journey", trip.__name__: "hajj_ledger.trip"}
register_topic("hajj_ledger.journey", journey)
register_topic("hajj_ledger.trip", trip)


@cache
def stored_topic(topic: str) -> str:
    """The topic as stored: `topic` (as eventsourcing's get_topic gives it) in the modules' stored names."""
    module, _, name = topic.partition(":")
    return f"{_STORED_MODULES.get(module, module)}:{name}"


class EventCodec(Mapper[UUID]):
    def __init__(self) -> None:
        super().__init__(transcoder=JSONTranscoder())  # required by the base class, unused here

    def to_stored_event(self, domain_event: DomainEventProtocol[UUID]) -> StoredEvent:
        topic, class_version = _stored_as(type(domain_event))
        state = vars(domain_event).copy()  # the fields in their order, less the envelope: the same bytes as ever
        del state["originator_id"], state["originator_version"]
        if "originator_topic" in state:  # a created event names its aggregate's class
            state["originator_topic"] = stored_topic(state["originator_topic"])
        if class_version > 1:
            state["class_version"] = class_version
        return StoredEvent(
            domain_event.originator_id,
            domain_event.originator_version,
            topic,
            orjson.dumps(state, default=_plain, option=orjson.OPT_PASSTHROUGH_DATACLASS),
        )

    def to_domain_event(self, stored_event: StoredEvent) -> DomainEventProtocol[UUID]:
        cls = resolve_topic(stored_event.topic)
        state = current_state(cls, stored_event.state)
        for name, convert in _converters(cls):
            if name in state:
                state[name] = convert(state[name])
        originator_id = stored_event.originator_id
        state["originator_id"] = originator_id if isinstance(originator_id, UUID) else UUID(originator_id)
        state["originator_version"] = stored_event.originator_version
        event = object.__new__(cls)
        object.__setattr__(event, "__dict__", state)
        return cast(DomainEventProtocol[UUID], event)


@cache
def _stored_as(cls: type) -> tuple[str, int]:
    """An event class's topic as stored, and its version: worked out once per class, not once per event."""
    return stored_topic(get_topic(cls)), getattr(cls, "class_version", 1)


def current_state(cls: type, stored: bytes) -> dict[str, Any]:
    """A stored event's JSON state, upcast from the version it was stored at to its class's current version."""
    state: dict[str, Any] = orjson.loads(stored)
    version = state.pop("class_version", 1)
    while version < getattr(cls, "class_version", 1):
        getattr(cls, f"upcast_v{version}_v{version + 1}")(state)
        version += 1
    return state


@cache
def _converters(cls: type) -> tuple[tuple[str, Convert], ...]:
    hints = typing.get_type_hints(cls)
    found = []
    for field in dataclasses.fields(cls):
        if field.name in _ENVELOPE:
            continue
        convert = _converter(hints[field.name])
        if convert is not None:
            found.append((field.name, convert))
    return tuple(found)


def _plain(value: Any) -> dict[str, Any]:
    """A stamp as JSON: without `late_reason` unless given, so the rare late correction costs other events nothing."""
    if isinstance(value, Stamp):
        fields = dict(vars(value))
        if fields["late_reason"] is None:
            del fields["late_reason"]
        return fields
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _member_of(enum: type[Enum]) -> Convert:
    """An enum's member by its stored value, looked up in a dict: calling the class costs a decode 3 µs an event
    (profiled), and a stored value is always one of the members."""
    return enum._value2member_map_.__getitem__


_ROLE = _member_of(Role)


def _stamp(data: dict[str, Any]) -> Stamp:
    correlation_id = data["correlation_id"]
    return Stamp(
        data["agency_id"],
        _ROLE(data["role"]),
        datetime.fromisoformat(data["occurred_at"]),
        UUID(data["command_id"]),
        UUID(correlation_id) if correlation_id else None,
        data.get("late_reason"),
    )


def _converter(hint: Any) -> Convert | None:
    """How to turn a JSON value back into `hint`; None where JSON already gives the right value."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        inner = _converter(options[0]) if len(options) == 1 else None
        return None if inner is None else (lambda v: None if v is None else inner(v))
    if typing.get_origin(hint) is tuple:  # tuple[X, ...]
        element = _converter(typing.get_args(hint)[0])
        return tuple if element is None else (lambda v: tuple(map(element, v)))
    if hint is datetime:
        return datetime.fromisoformat
    if hint is date:
        return date.fromisoformat
    if hint is UUID:
        return UUID
    if hint is Stamp:
        return _stamp
    if isinstance(hint, type) and issubclass(hint, Enum):
        return _member_of(hint)
    return None
