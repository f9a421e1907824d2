"""The export's read model files: each model's rows a page at a time (fetched, or streamed by PostgreSQL's COPY),
with the ids that name a person pseudonymised."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hajj_ledger.projections.framework import Model
from hajj_ledger.projections.pseudonyms import Pseudonyms, fixed_texts, uuid_texts

PAGE = 10_000


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


def fetched_pages(
    connection: Connection, query: sa.Select[Any], schema: pa.Schema, ids: dict[str, bool]
) -> Iterator[pa.Table]:
    """A read model's rows a page at a time, as rows of Python values (SQLite): ids as text, times in UTC (SQLite gives
    them back without their zone: pyarrow takes a time without one as UTC)."""
    for rows in connection.execute(query).yield_per(PAGE).partitions():
        arrays = []
        for field, values in zip(schema, zip(*rows, strict=True), strict=True):
            arrays.append(_id_array(values) if field.name in ids else pa.array(values, field.type))
        yield pa.Table.from_arrays(arrays, schema=schema)


def copied_pages(connection: Connection, query: sa.Select[Any], schema: pa.Schema) -> Iterator[pa.Table]:
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


def pseudonymised(table: pa.Table, ids: dict[str, bool], pseudonyms: Pseudonyms) -> pa.Table:
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
            made = fixed_texts(pseudonyms.many(texts)) if len(present) else present
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
    texts = fixed_texts(uuid_texts(np.frombuffer(b"".join(present), np.uint8).reshape(-1, 16)))
    return _with_nulls(texts, np.fromiter((v is None for v in values), bool, len(values)))
