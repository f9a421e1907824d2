"""Analysts' snapshots: the events and every read model as of one log position, pseudonymised, in Parquet or CSV.

One directory per export: `events/` (one file per export run: a later `--since` run appends a part), one file per
read model, and `manifest.json`: the position, the season, row counts, the SHA-256 and schema of every file, and the
chain's signed checkpoint covering the position, with the manifest itself signed by the ledger's key.

An export is of one season: each read model whose rows are of a season (a `season` column) holds that season's rows
only (trips and buildings are of no season: whole). The events are the whole log up to the position, as the chain's
proof needs every one; an event names its journey, whose season the exported `journey_status` gives.
`hajj-ledger verify --export DIR` checks all of it (`hajj_ledger.audit.manifests`).

Pseudonymised: every pilgrim, journey, command and correlation id is replaced by a keyed hash (BLAKE2b keyed with
the export key, shaped as a UUID), so exports made with one key join with each other and with nothing else; the
identity digest a registration carries is dropped. Events carry no identity, and read models none either.

The events are rewritten a page at a time as columns, never event by event: a pseudonym is as long as the UUID it
replaces, so the ids are found in the stored JSON by pyarrow, overwritten in place in the page's one buffer of bytes
(numpy), and the stamp's fields are read out by pyarrow's regular expressions. Python's share is one keyed hash an
id. A page holding anything unusual (an escaped character, an id not spelled as the ledger writes one) is decoded
event by event instead, with the same outcome.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import os
import tempfile
import typing
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, date, datetime
from functools import cache
from importlib.metadata import version
from pathlib import Path
from typing import Any
from uuid import UUID

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import sqlalchemy as sa
from eventsourcing.utils import resolve_topic
from sqlalchemy.engine import Connection

from hajj_ledger.audit.chain import Chain, signing_keys
from hajj_ledger.audit.chain_sql import DigestedRow, Packed
from hajj_ledger.audit.manifests import EVENTS, MANIFEST, file_sha256, sign_manifest
from hajj_ledger.domain.errors import ValidationError
from hajj_ledger.ledger import JourneyLedger
from hajj_ledger.projections import EXPORT_FORMATS, PROJECTIONS
from hajj_ledger.projections.framework import Model
from hajj_ledger.projections.read_season import SEASON, by_season, default_season
from hajj_ledger.projections.replay import replay
from hajj_ledger.projections.schema import engine_for, positions
from hajj_ledger.settings import settings, variable_for
from hajj_ledger.store.recorders import DEFAULT_DATABASE_URL, database_url
from hajj_ledger.writing import collector_paused

Progress = Callable[[int, int], None]  # (events written, events to write)

FORMATS = EXPORT_FORMATS
KEY_VARIABLE = variable_for("export_key")  # base64 of 32 bytes: the key pseudonyms are made with
DEMO_KEY_FILE = Path("var/demo-export-key")
PAGE = 10_000
# Ids that name no person: kept as they are.
KEPT_UUIDS = frozenset({"trip_id", "offer_id", "contract_id", "building_id", "building_ids", "season_id"})


class Pseudonyms:
    """An id to a keyed hash of it (BLAKE2b keyed with the export key, 16 bytes, written as a UUID): the same id
    gives the same pseudonym under one key, and nothing without the key leads back."""

    def __init__(self, key: bytes) -> None:
        self.key = key
        self.key_id = hashlib.sha256(b"hajj-ledger export key id" + key).hexdigest()[:16]
        self._made: dict[str, str] = {}

    def __call__(self, value: str) -> str:
        """For ids that recur (journeys, pilgrims): remembered, up to a bound, so memory stays flat."""
        found = self._made.get(value)
        if found is None:
            if len(self._made) >= 200_000:
                self._made.clear()
            found = self._made[value] = self.once(value)
        return found

    def once(self, value: str) -> str:
        """For ids seen once (commands): not remembered. `value` is a UUID as the ledger writes it (canonical)."""
        return _uuid_text(hashlib.blake2b(value.encode(), key=self.key, digest_size=16).hexdigest())

    def many(self, texts: np.ndarray) -> np.ndarray:
        """`once` of each row of `texts`, UUIDs as text (n x 36 bytes): their pseudonyms, as text, n x 36 bytes. Each
        distinct id is hashed once (a journey's recur in a page)."""
        distinct, inverse = np.unique(np.ascontiguousarray(texts).view("V36").ravel(), return_inverse=True)
        return self.each(distinct.view(np.uint8).reshape(-1, 36))[inverse.ravel()]

    def each(self, texts: np.ndarray) -> np.ndarray:
        """`many` without looking for repeats: for ids each seen once (commands')."""
        flat, keyed = np.ascontiguousarray(texts).tobytes(), hashlib.blake2b(key=self.key, digest_size=16).copy
        digests = []
        for start in range(0, len(flat), 36):
            digest = keyed()  # a copy of the keyed state: cheaper than keying anew
            digest.update(flat[start : start + 36])
            digests.append(digest.digest())
        return uuid_texts(np.frombuffer(b"".join(digests), np.uint8).reshape(-1, 16))

    @classmethod
    def configured(cls, url: str) -> Pseudonyms:
        import base64

        given = settings().export_key
        text = given.get_secret_value() if given is not None else None
        if not text and url == DEFAULT_DATABASE_URL:
            if not DEMO_KEY_FILE.exists():
                DEMO_KEY_FILE.parent.mkdir(parents=True, exist_ok=True)
                DEMO_KEY_FILE.write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
                DEMO_KEY_FILE.chmod(0o600)
            text = DEMO_KEY_FILE.read_text()
        if not text:
            raise ValidationError(KEY_VARIABLE, "no export key: set it to base64 of 32 random bytes")
        try:
            key = base64.b64decode(text.strip(), validate=True)
        except ValueError:
            key = b""
        if len(key) != 32:
            raise ValidationError(KEY_VARIABLE, "expected base64 of 32 bytes")
        return cls(key)


def _uuid_text(h: str) -> str:
    """32 hex digits in a UUID's canonical spelling."""
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_HEX = np.frombuffer(b"0123456789abcdef", np.uint8)
_HYPHENS = np.array([8, 13, 18, 23])
_DIGITS = np.array([i for i in range(36) if i not in (8, 13, 18, 23)])
_SPAN = np.arange(36)


def uuid_texts(raw: np.ndarray) -> np.ndarray:
    """UUIDs' 16 bytes (n x 16) in their canonical spelling (n x 36 bytes of text)."""
    digits = np.empty((raw.shape[0], 32), np.uint8)
    digits[:, 0::2] = _HEX[raw >> 4]
    digits[:, 1::2] = _HEX[raw & 15]
    texts = np.full((raw.shape[0], 36), ord("-"), np.uint8)
    texts[:, _DIGITS] = digits
    return texts


def _is_uuid_text(texts: np.ndarray) -> bool:
    """Whether every row (n x 36 bytes) is a UUID as the ledger writes one: lower-case hex digits and hyphens."""
    digits = texts[:, _DIGITS]
    hexadecimal = ((digits >= ord("0")) & (digits <= ord("9"))) | ((digits >= ord("a")) & (digits <= ord("f")))
    return bool(hexadecimal.all() and (texts[:, _HYPHENS] == ord("-")).all())


def _fixed_texts(texts: np.ndarray) -> pa.Array:
    """Rows of n x 36 bytes of text as a string array, without a Python object a row."""
    count = texts.shape[0]
    offsets = np.arange(0, 36 * count + 1, 36, dtype=np.int32)
    return pa.Array.from_buffers(pa.string(), count, [None, pa.py_buffer(offsets), pa.py_buffer(texts.tobytes())])


@cache
def _uuid_fields(topic: str) -> tuple[tuple[str, ...], bool]:
    """The UUID-valued fields of an event class that name a person or a command, and whether it has a stamp."""
    cls = resolve_topic(topic)
    hints = typing.get_type_hints(cls)
    names = []
    for field in dataclasses.fields(cls):
        hint = hints[field.name]
        if field.name not in KEPT_UUIDS and (hint is UUID or UUID in typing.get_args(hint)):
            names.append(field.name)
    return tuple(n for n in names if n != "originator_id"), "stamp" in hints


def pseudonymise_state(topic: str, state: bytes, pseudonyms: Pseudonyms) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads(state)
    names, stamped = _uuid_fields(topic)
    for name in names:
        if data.get(name):
            data[name] = pseudonyms(data[name])
    if stamped:
        stamp = data["stamp"]
        for name in ("command_id", "correlation_id"):
            if stamp.get(name):
                stamp[name] = pseudonyms.once(stamp[name])
    if "identity_digest" in data:
        data["identity_digest"] = None  # a keyed hash of the vault's ciphertext: a link back to the vault
    return data


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


def _arrow_type(column: sa.Column[Any]) -> pa.DataType:
    kind = column.type
    if isinstance(kind, sa.Uuid):
        return pa.string()
    if isinstance(kind, sa.DateTime):
        return pa.timestamp("us", tz="UTC")
    if isinstance(kind, sa.Date):
        return pa.date32()
    if isinstance(kind, sa.Boolean):
        return pa.bool_()
    if isinstance(kind, sa.BigInteger):
        return pa.int64()
    if isinstance(kind, sa.Integer):
        return pa.int32()
    return pa.dictionary(pa.int32(), pa.string())  # codes: stages, ports, agencies, countries


def model_schema(model: Model) -> pa.Schema:
    return pa.schema([pa.field(c.name, _arrow_type(c), nullable=bool(c.nullable)) for c in model.columns()])


@dataclasses.dataclass
class Export:
    """One run of an export: where, as of which position, from which position (0: everything)."""

    out: Path
    at: int
    since: int
    fmt: str
    pseudonyms: Pseudonyms
    manifest: dict[str, Any]
    season: int | None = None  # the season the read models' rows are of; None: the current one, once known


class Writer:
    """A table written page by page: Parquet row groups, or CSV rows; never the whole table in memory."""

    def __init__(self, path: Path, schema: pa.Schema, fmt: str) -> None:
        self.path, self.schema, self.fmt, self.rows = path, schema, fmt, 0
        path.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "parquet":
            # Dictionary pages for the columns of codes only: for ids, JSON and digests (nearly all distinct) the
            # writer would build a dictionary of each page's values only to give it up. The codes come as Arrow
            # dictionaries (cheap to make, written as they are) but without Arrow's schema in the file they read
            # back as plain strings: each page has a dictionary of its own, and pyarrow refuses to group a column
            # whose dictionaries differ between row groups or files.
            codes = [f.name for f in schema if pa.types.is_dictionary(f.type)]
            self._parquet = pq.ParquetWriter(path, schema, compression="zstd", use_dictionary=codes, store_schema=False)
        else:
            self._file = path.open("w", newline="", encoding="utf-8")
            self._csv = csv.writer(self._file)
            self._csv.writerow(schema.names)

    def write_table(self, table: pa.Table) -> None:
        self.rows += table.num_rows
        if self.fmt == "parquet":
            self._parquet.write_table(table)
            return
        for row in zip(*(table.column(n).to_pylist() for n in self.schema.names), strict=True):
            self._csv.writerow(_csv_value(v) for v in row)

    def close(self) -> dict[str, Any]:
        if self.fmt == "parquet":
            self._parquet.close()
        else:
            self._file.close()
        return {"file": self.path.name, "rows": self.rows, "sha256": file_sha256(self.path)}


def _table(schema: pa.Schema, columns: dict[str, list[Any]]) -> pa.Table:
    arrays = []
    for field in schema:
        values = columns[field.name]
        if pa.types.is_timestamp(field.type) and values and isinstance(next(iter(values)), str):
            arrays.append(pa.array(values, pa.string()).cast(field.type))  # ISO 8601 text, parsed in C
        else:
            arrays.append(pa.array(values, field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return value


def _schema_json(schema: pa.Schema) -> list[dict[str, Any]]:
    """The columns as the files read back: codes as plain strings (see Writer)."""
    return [{"name": f.name, "type": str(_read_type(f.type)), "nullable": f.nullable} for f in schema]


def _read_type(kind: pa.DataType) -> pa.DataType:
    return kind.value_type if pa.types.is_dictionary(kind) else kind


def export(
    out: Path,
    *,
    at: int | None = None,
    since: int | None = None,
    fmt: str = "parquet",
    url: str | None = None,
    progress: Progress | None = None,
    season: int | None = None,
) -> dict[str, Any]:
    """Export the events up to `at` (default: the head) and every read model as of `at` into `out`, the rows of a
    model by season those of `season` only (default: the current season; with `since`, the previous export's); with
    `since`, only the events after it, appended to the export already in `out` (which must end at `since`)."""
    url = url or database_url()
    if fmt not in FORMATS:
        raise ValidationError("format", f"expected one of {', '.join(FORMATS)}, got {fmt!r}")
    ledger = JourneyLedger(url, create_tables=False)
    try:
        chain = Chain(ledger, signing_keys(url, required=True))
        head = ledger.head()
        at = head if at is None else at
        if not 0 < at <= head:
            raise ValidationError("at", f"must be a position in the log, 1 to {head:,}")
        manifest = _previous(out, since, fmt)
        if since is not None and since >= at:
            raise ValidationError("since", f"the previous export already reaches {since:,}; nothing after it")
        checkpoint = chain.checkpoint()  # seals up to the head: a checkpoint at or after `at` exists from here
        covering = chain.tables.checkpoint_at_or_after(at)
        assert checkpoint is not None and covering is not None
        run = Export(out, at, since or 0, fmt, Pseudonyms.configured(url), manifest, _season(manifest, season))
        if manifest.get("pseudonym_key_id", run.pseudonyms.key_id) != run.pseudonyms.key_id:
            raise ValidationError(KEY_VARIABLE, "the previous export in that directory was made with another key")
        _write_events(chain, run, progress)
        _write_models(url, run)
        manifest.update(
            ledger_version=version("hajj-ledger"),
            format=fmt,
            position=at,
            exported_at=datetime.now(UTC).isoformat(timespec="seconds"),
            pseudonym_key_id=run.pseudonyms.key_id,
            season=run.season,
            chain={
                "following": [[p, d.hex()] for p, d in chain.tables.digests(at, covering.position)],
                "checkpoint": covering.to_json(),
            },
        )
        sign_manifest(manifest, chain.keys)
        (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        return manifest
    finally:
        ledger.close()


def _previous(out: Path, since: int | None, fmt: str) -> dict[str, Any]:
    """The manifest an incremental export appends to; a fresh one for a new export into an empty directory."""
    path = out / MANIFEST
    if since is None:
        if out.exists() and any(out.iterdir()):
            raise ValidationError("out", f"{out} is not empty; export into a new directory, or give --since")
        out.mkdir(parents=True, exist_ok=True)
        return {"tables": {}}
    if not path.exists():
        raise ValidationError("since", f"no previous export in {out} to append to")
    manifest: dict[str, Any] = json.loads(path.read_text())
    if manifest["position"] != since:
        raise ValidationError("since", f"the export in {out} ends at {manifest['position']:,}, not {since:,}")
    if manifest["format"] != fmt:
        raise ValidationError("format", f"the export in {out} is {manifest['format']}")
    return manifest


def _season(manifest: dict[str, Any], season: int | None) -> int | None:
    """The season of an export's read models: the one asked for; appending, the previous export's, and no other."""
    previous: int | None = manifest.get("season")
    if previous is not None and season not in (None, previous):
        raise ValidationError("season", f"the export being appended to is of season {previous}, not {season}")
    return season if season is not None else previous


def _write_events(chain: Chain, run: Export, progress: Progress | None) -> None:
    suffix = "parquet" if run.fmt == "parquet" else "csv"
    writer = Writer(run.out / EVENTS / f"part-{run.since + 1:012d}-{run.at:012d}.{suffix}", EVENTS_SCHEMA, run.fmt)
    with ThreadPoolExecutor(1, thread_name_prefix="export-writer") as background:
        written: Future[None] | None = None
        for page in chain.tables.pages_with_digests(run.since, run.at, PAGE):
            table = events_table(page, run.pseudonyms)
            if written is not None:
                written.result()
            written = background.submit(writer.write_table, table)  # compressing and writing overlap the next page
            if progress is not None:
                progress(int.from_bytes(page.positions[-8:], "big", signed=True) - run.since, run.at - run.since)
        if written is not None:
            written.result()
    entry = writer.close()
    tables = run.manifest["tables"]
    entries = tables.setdefault(EVENTS, {"files": [], "rows": 0, "schema": _schema_json(EVENTS_SCHEMA)})
    entries["files"].append({**entry, "file": f"{EVENTS}/{entry['file']}", "from": run.since + 1, "to": run.at})
    entries["rows"] += entry["rows"]


# An event's JSON as the codec writes it begins with the recorded time, the aggregate's topic (a created event) and
# the stamp's fields in their order. Its strings hold no quote (a page with an escape is decoded event by event), so
# the n-th quote of an event is the same field's in every event of that shape: the fields are read by counting
# quotes, with every key checked where it must stand.
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
        for field in _uuid_fields(name)[0]:
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
    if not (_is_uuid_text(texts) and (data[at + 36] == ord('"')).all()):
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
        "aggregate_id": _fixed_texts(aggregates),
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
            pseudonyms(_uuid_text(r[1].hex())) if ".journey:" in r[3] else _uuid_text(r[1].hex()) for r in rows
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


def _write_models(url: str, run: Export) -> None:
    """Every read model as of `at`: the serving views if every projection stands exactly there (read in one
    snapshot), else rebuilt aside by the projection runner stopped at `at`."""
    engine = engine_for(url)
    try:
        with engine.connect() as connection, connection.begin():
            if connection.dialect.name == "postgresql":
                connection.execute(sa.text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
            installed = sa.inspect(connection).has_table(positions.name)
            exported = positions.c.projection.in_([p.name for p in PROJECTIONS])  # the views, not the trail's index
            query = sa.select(positions.c.position).where(positions.c.serving, exported)
            serving = connection.execute(query).scalars().all() if installed else []
            if serving and set(serving) == {run.at}:
                _models_from(connection, run)
                return
    finally:
        engine.dispose()
    with tempfile.TemporaryDirectory(prefix="hajj-ledger-export-") as directory:
        aside = engine_for(f"sqlite:///{directory}/views.sqlite3")
        try:
            replay(url, run.at, aside)
            with aside.connect() as connection:
                _models_from(connection, run)
        finally:
            aside.dispose()


def _models_from(connection: Connection, run: Export) -> None:
    copied = connection.dialect.name == "postgresql"
    if run.season is None:
        run.season = default_season(connection)
    for projection in PROJECTIONS:
        for model in projection.models:
            schema = model_schema(model)
            suffix = "parquet" if run.fmt == "parquet" else "csv"
            writer = Writer(run.out / f"{model.name}.{suffix}", schema, run.fmt)
            ids = {c.name: c.name not in KEPT_UUIDS for c in model.columns() if isinstance(c.type, sa.Uuid)}
            view = model.view()
            query = sa.select(*(view.c[n] for n in schema.names)).order_by(*(view.c[k] for k in model.key))
            if run.season is not None and by_season(model):  # one season's rows; trips and buildings have none
                query = query.where(view.c[SEASON] == run.season)
            pages = _copied(connection, query, schema) if copied else _fetched(connection, query, schema, ids)
            written = False
            for page in pages:
                writer.write_table(_pseudonymised(page, ids, run.pseudonyms))
                written = True
            if not written:
                writer.write_table(schema.empty_table())
            run.manifest["tables"][model.name] = {
                "files": [writer.close()],
                "rows": writer.rows,
                "schema": _schema_json(schema),
            }


def _fetched(
    connection: Connection, query: sa.Select[Any], schema: pa.Schema, ids: dict[str, bool]
) -> Iterator[pa.Table]:
    """A read model's rows a page at a time, as rows of Python values (SQLite): ids as text, times in UTC (SQLite gives
    them back without their zone: pyarrow takes a time without one as UTC)."""
    for rows in connection.execute(query).yield_per(PAGE).partitions():
        arrays = []
        for field, values in zip(schema, zip(*rows, strict=True), strict=True):
            arrays.append(_id_array(values) if field.name in ids else pa.array(values, field.type))
        yield pa.Table.from_arrays(arrays, schema=schema)


def _copied(connection: Connection, query: sa.Select[Any], schema: pa.Schema) -> Iterator[pa.Table]:
    """A read model's rows streamed by PostgreSQL's COPY as CSV and parsed by pyarrow, a block at a time: no Python
    object a row or a value (a third of the export's time at a season's scale went to making them). In the
    export's transaction, so in its snapshot."""
    text = str(query.compile(dialect=connection.dialect, compile_kwargs={"literal_binds": True}))
    options = pa_csv.ConvertOptions(
        column_types={f.name: f.type for f in schema},  # codes straight into dictionaries
        true_values=["t"],
        false_values=["f"],
        strings_can_be_null=True,  # an unquoted empty field is NULL; an empty string comes quoted
        quoted_strings_can_be_null=False,
    )
    raw: Any = connection.connection.driver_connection  # psycopg's: its COPY
    with raw.cursor() as cursor:
        cursor.execute("SET LOCAL TimeZone = 'UTC'")
        cursor.execute("SET LOCAL DateStyle = 'ISO, YMD'")
        with cursor.copy(f"COPY ({text}) TO STDOUT WITH (FORMAT csv)") as copy:
            stream = io.BufferedReader(_CopyStream(copy), 1 << 20)
            if not stream.peek(1):
                return  # no rows (pyarrow takes an empty file for an error)
            # Blocks of 512 KiB: pyarrow reads a few ahead, and with 4 MiB blocks a view of 300,000 journeys took
            # the export's peak memory from 250 to 355 MB; as fast either way.
            read = pa_csv.ReadOptions(column_names=schema.names, block_size=1 << 19, use_threads=False)
            for batch in pa_csv.open_csv(stream, read_options=read, convert_options=options):
                yield pa.Table.from_arrays(batch.columns, schema=schema)


class _CopyStream(io.RawIOBase):
    """The blocks of a COPY TO STDOUT as a file to read."""

    def __init__(self, copy: Any) -> None:
        self._blocks = iter(copy)
        self._left = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._left:
            block = next(self._blocks, None)
            if block is None:
                return 0
            self._left = memoryview(block)
        size = min(len(buffer), len(self._left))
        buffer[:size] = self._left[:size]
        self._left = self._left[size:]
        return size


def _pseudonymised(table: pa.Table, ids: dict[str, bool], pseudonyms: Pseudonyms) -> pa.Table:
    """The id columns that name a person replaced by their pseudonyms; nulls stay null."""
    for name, hidden in ids.items():
        if hidden:
            index = table.schema.get_field_index(name)
            column = table.column(index).combine_chunks()
            present = column.drop_null()
            lengths = np.asarray(pc.binary_length(present))
            if not (lengths == 36).all():
                raise ValueError(f"{name}: an id not spelled as a UUID")
            offsets = np.frombuffer(present.buffers()[1], np.int32, len(present) + 1, present.offset * 4)
            texts = np.frombuffer(present.buffers()[2], np.uint8)[offsets[0] : offsets[-1]].reshape(-1, 36)
            made = _fixed_texts(pseudonyms.many(texts)) if len(present) else present
            missing = np.asarray(column.is_null(), bool)
            table = table.set_column(index, table.schema.field(index), _with_nulls(made, missing))
    return table


def _with_nulls(values: pa.Array, missing: np.ndarray) -> pa.Array:
    """`values` (a column's non-null values, in order) spread out with a null wherever `missing` is true."""
    if not missing.any():
        return values
    return values.take(pa.array(np.cumsum(~missing) - 1, mask=missing))


def _id_array(values: tuple[UUID | None, ...]) -> pa.Array:
    """UUIDs as text; None stays null."""
    present = [v.bytes for v in values if v is not None]
    texts = _fixed_texts(uuid_texts(np.frombuffer(b"".join(present), np.uint8).reshape(-1, 16)))
    return _with_nulls(texts, np.fromiter((v is None for v in values), bool, len(values)))
