"""The export's events file: the log a page at a time, pseudonymised, with each event's digest.

The events are rewritten a page at a time as columns, never event by event: a pseudonym is as long as the UUID it
replaces, so the ids are found in the stored JSON by pyarrow, overwritten in place in the page's one buffer of bytes
(numpy), and the stamp's fields are read out by pyarrow's regular expressions. Python's share is one keyed hash an
id. A page holding anything unusual (an escaped character, an id not spelled as the ledger writes one) is decoded
event by event instead, with the same outcome.
"""

from __future__ import annotations

import dataclasses
import logging
from functools import cache
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
from eventsourcing.utils import resolve_topic

from hajj_ledger.audit.pages import DigestedRow, Packed
from hajj_ledger.projections.pseudonyms import (
    Pseudonyms,
    fixed_texts,
    is_uuid_text,
    pseudonymise_state,
    uuid_fields,
    uuid_text,
    uuid_texts,
)
from hajj_ledger.writing import collector_paused

log = logging.getLogger("hajj_ledger.projections")

_SPAN = np.arange(36)


EVENTS_SCHEMA = pa.schema(
    [
        ("position", pa.int64()),
        ("topic", pa.dictionary(pa.int32(), pa.string())),
        ("aggregate_id", pa.string()),
        ("version", pa.int64()),
        ("event", pa.dictionary(pa.int32(), pa.string())),
        ("occurred_at", pa.timestamp("us", tz="UTC")),
        ("recorded_at", pa.timestamp("us", tz="UTC")),
        ("agency_id", pa.dictionary(pa.int32(), pa.string())),
        ("role", pa.dictionary(pa.int32(), pa.string())),
        ("state", pa.string()),  # the event's fields, pseudonymised, as JSON: replayable into a fresh ledger
        ("digest", pa.binary(32)),  # the chain's digest of the event as stored: what `verify --export` chains
    ]
)


def _table(schema: pa.Schema, columns: dict[str, list[Any]]) -> pa.Table:
    arrays = []
    for field in schema:
        values = columns[field.name]
        if pa.types.is_timestamp(field.type) and values and isinstance(next(iter(values)), str):
            arrays.append(pa.array(values, pa.string()).cast(field.type))  # ISO 8601 text, parsed in C
        else:
            arrays.append(pa.array(values, field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


# An event's JSON as the codec writes it begins with the recorded time, the aggregate's topic (a created event) and
# the stamp's fields in their order. Its strings hold no quote (a page with an escape is decoded event by event), so
# the n-th quote of an event is the same field's in every event of that shape: the fields are read by counting
# quotes, with every key checked where it must stand. A page laid out otherwise (the codec's key order changed) is
# decoded event by event, as it must be, and said so: tests/unit/test_export_layout.py holds this to the codec.
_TOPIC_KEY = b'originator_topic":"'


_STAMP_KEYS = ((0, b'stamp":{"agency_id":"'), (5, b'","role":"'), (9, b'","occurred_at":"'), (13, b'","command_id":"'))


_CORRELATION_KEY = b'","correlation_id":'


_DIGEST = '"identity_digest":"'


def _expect(data: np.ndarray, at: np.ndarray, text: bytes) -> bool:
    """Whether `text` stands at each of `at` in `data`."""
    return all((data[at + offset] == byte).all() for offset, byte in enumerate(text))  # a byte at a time: no n x len


def _strings(data: np.ndarray, begin: np.ndarray, end: np.ndarray) -> pa.Array:
    """The text between each `begin` and `end` of `data`, as a string array."""
    lengths = end - begin
    offsets = np.zeros(begin.size + 1, np.int32)
    np.cumsum(lengths, out=offsets[1:])
    picked = data[np.repeat(begin - offsets[:-1], lengths) + np.arange(offsets[-1])]
    return pa.Array.from_buffers(pa.string(), begin.size, [None, pa.py_buffer(offsets), pa.py_buffer(picked)])


def _stamps(data: np.ndarray, starts: np.ndarray) -> dict[str, Any] | None:
    """Each event's recorded time, the stamp's agency, role and time (string arrays), where its command id's value
    begins, and where its correlation id's does (or -1: none); None if an event is not of the codec's shape."""
    quotes = np.flatnonzero(data == ord('"')).astype(np.int32)
    first = np.searchsorted(quotes, starts[:-1])
    if not first.size or int(first.max()) + 3 >= quotes.size or not _expect(data, starts[:-1], b'{"timestamp":"'):
        return None
    created = data[quotes[first + 3] + 3] == ord("o")
    base = first + np.where(created, 8, 4)  # the stamp's key
    if int(base.max()) + 17 >= quotes.size or not _expect(data, quotes[first[created] + 4] + 1, _TOPIC_KEY):
        return None
    for offset, key in _STAMP_KEYS:
        if not _expect(data, quotes[base + offset] + (offset == 0), key):
            return None
    command = quotes[base + 16] + 1
    if not ((quotes[base + 17] == command + 36).all() and _expect(data, command + 36, _CORRELATION_KEY)):
        return None
    after = command + 36 + len(_CORRELATION_KEY)
    return {
        "recorded_at": _strings(data, quotes[first + 2] + 1, quotes[first + 3]),
        "agency_id": _strings(data, quotes[base + 4] + 1, quotes[base + 5]),
        "role": _strings(data, quotes[base + 8] + 1, quotes[base + 9]),
        "occurred_at": _strings(data, quotes[base + 12] + 1, quotes[base + 13]),
        "command": command,
        "correlation": np.where(data[after] == ord('"'), after + 1, -1),
    }


def events_table(page: Packed, pseudonyms: Pseudonyms) -> pa.Table:
    """A page of the log as the events file holds it: pseudonymised, with its digests."""
    table = _rewritten(page, pseudonyms)
    return table if table is not None else _decoded(page.rows(), pseudonyms)


def _lengths(packed: bytes, count: int) -> np.ndarray:
    """Offsets into a packed column of values of these lengths (4 bytes each, big-endian)."""
    offsets = np.zeros(count + 1, np.int32)
    np.cumsum(np.frombuffer(packed, ">i4", count), out=offsets[1:])
    return offsets


def _rewritten(page: Packed, pseudonyms: Pseudonyms) -> pa.Table | None:
    """The page rewritten column by column; None if it holds anything this does not handle (then `_decoded`)."""
    count = page.size
    starts = _lengths(page.state_lengths, count)
    state = pa.Array.from_buffers(pa.binary(), count, [None, pa.py_buffer(starts), pa.py_buffer(page.states)])
    data = np.frombuffer(page.states, np.uint8).copy()
    if (data == ord("\\")).any():
        return None
    stamp = _stamps(data, starts)
    if stamp is None:
        first, last = np.frombuffer(page.positions, ">i8")[[0, -1]]
        log.warning(
            "events %d-%d are not laid out as the export reads the codec's JSON (has its key order changed?): "
            "decoded event by event, several times slower",
            first,
            last,
        )
        return None
    topics = _lengths(page.topic_lengths, count)
    topic = pa.Array.from_buffers(pa.string(), count, [None, pa.py_buffer(topics), pa.py_buffer(page.topics)])
    topic = topic.dictionary_encode()
    names: list[str] = topic.dictionary.to_pylist()
    which = np.asarray(topic.indices)
    commands = stamp["command"]  # each command's id is its own: hashed without looking for repeats
    spans = [stamp["correlation"][stamp["correlation"] >= 0]]
    fields: dict[str, list[int]] = {}  # a person's id field: the topics (by index) that have it
    for index, name in enumerate(names):
        for field in uuid_fields(name)[0]:
            fields.setdefault(field, []).append(index)
    for field, indexes in fields.items():
        having = np.flatnonzero(np.isin(which, indexes))
        pattern = f'"{field}":"'
        found = np.asarray(pc.find_substring(state.take(having), pattern))
        spans.append(starts[having[found >= 0]] + found[found >= 0] + len(pattern))
    at = np.concatenate([commands, *spans])
    if at.size and int(at.max()) + 36 >= data.size:
        return None
    span = at[:, None] + _SPAN
    texts = data[span]
    if not (is_uuid_text(texts) and (data[at + 36] == ord('"')).all()):
        return None
    data[span[: commands.size]] = pseudonyms.each(texts[: commands.size])
    data[span[commands.size :]] = pseudonyms.many(texts[commands.size :])
    rewritten = pa.Array.from_buffers(pa.binary(), count, [None, pa.py_buffer(starts), pa.py_buffer(data)])
    dropping = np.isin(which, [i for i, name in enumerate(names) if _carries_digest(name)])
    aggregates = uuid_texts(np.frombuffer(page.ids, np.uint8).reshape(count, 16))
    journeys = np.isin(which, [i for i, name in enumerate(names) if ".journey:" in name])
    aggregates[journeys] = pseudonyms.many(aggregates[journeys])
    events = pa.array([name.rsplit(".", 1)[-1] for name in names], pa.string())
    instant = EVENTS_SCHEMA.field("occurred_at").type
    columns = {
        "position": pa.array(np.frombuffer(page.positions, ">i8").astype(np.int64)),
        "topic": topic,
        "aggregate_id": fixed_texts(aggregates),
        "version": pa.array(np.frombuffer(page.versions, ">i8").astype(np.int64)),
        "event": pc.take(events, topic.indices).dictionary_encode(),
        "occurred_at": stamp["occurred_at"].cast(instant),
        "recorded_at": stamp["recorded_at"].cast(instant),
        "agency_id": stamp["agency_id"].dictionary_encode(),
        "role": stamp["role"].dictionary_encode(),
        "state": _digest_dropped(rewritten, dropping).cast(pa.string()),
        "digest": pa.Array.from_buffers(pa.binary(32), count, [None, pa.py_buffer(page.digests)]),
    }
    return pa.Table.from_arrays([columns[name] for name in EVENTS_SCHEMA.names], schema=EVENTS_SCHEMA)


@cache
def _carries_digest(topic: str) -> bool:
    return any(field.name == "identity_digest" for field in dataclasses.fields(resolve_topic(topic)))


def _digest_dropped(states: pa.Array, carrying: np.ndarray) -> pa.Array:
    """The identity digest a registration carries, dropped (null), in the events that can carry one."""
    if not carrying.any():
        return states
    dropped = pc.replace_substring_regex(states.filter(carrying), f'{_DIGEST}[^"]*"', '"identity_digest":null')
    return pc.replace_with_mask(states, pa.array(carrying), dropped)


def _decoded(rows: list[DigestedRow], pseudonyms: Pseudonyms) -> pa.Table:
    """The page decoded and rewritten event by event."""
    with collector_paused():
        data = [pseudonymise_state(r[3], r[4], pseudonyms) for r in rows]
    stamps = [d.get("stamp") or {} for d in data]
    columns: dict[str, list[Any]] = {
        "position": [r[0] for r in rows],
        "topic": [r[3] for r in rows],
        "aggregate_id": [
            pseudonyms(uuid_text(r[1].hex())) if ".journey:" in r[3] else uuid_text(r[1].hex()) for r in rows
        ],
        "version": [r[2] for r in rows],
        "event": [r[3].rsplit(".", 1)[-1] for r in rows],
        "occurred_at": [s.get("occurred_at") for s in stamps],  # ISO text: parsed by the schema's cast
        "recorded_at": [d["timestamp"] for d in data],
        "agency_id": [s.get("agency_id") for s in stamps],
        "role": [s.get("role") for s in stamps],
        "state": [orjson.dumps(d).decode() for d in data],
        "digest": [r[5] for r in rows],
    }
    return _table(EVENTS_SCHEMA, columns)
