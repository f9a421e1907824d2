"""The files of a season's archive: their schemas, and a page of the hot store's log, chain or checkpoints as a table
of them."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from hajj_ledger.audit.chain_sql import ChainTables
from hajj_ledger.audit.pages import Packed

PAGE = 20_000


EVENTS_SCHEMA = pa.schema(
    [
        ("position", pa.int64()),
        ("originator_id", pa.binary(16)),
        ("originator_version", pa.int64()),
        ("topic", pa.string()),
        ("state", pa.binary()),
    ]
)


RECEIPTS_SCHEMA = pa.schema([("command_id", pa.string()), ("fingerprint", pa.string()), ("outcome", pa.string())])


CHAIN_SCHEMA = pa.schema([("position", pa.int64()), ("digest", pa.binary(32))])


CHECKPOINTS_SCHEMA = pa.schema(
    [
        ("position", pa.int64()),
        ("head", pa.binary(32)),
        ("signed_at", pa.string()),
        ("key_id", pa.string()),
        ("signature", pa.binary()),
    ]
)


def chain_pages(tables: ChainTables, after: int, last: int) -> Iterator[pa.Table]:
    for positions, digests in tables.digest_pages(after, last, PAGE):
        count = len(positions) // 8
        yield pa.table(
            [
                np.frombuffer(positions, ">i8").astype(np.int64),
                pa.FixedSizeBinaryArray.from_buffers(pa.binary(32), count, [None, pa.py_buffer(digests)]),
            ],
            CHAIN_SCHEMA,
        )


def events_table(page: Packed) -> pa.Table:
    """A page of the log, packed by column (numbers big-endian, texts after their lengths), as Arrow columns."""
    count = page.size

    def texts(kind: pa.DataType, lengths: bytes, values: bytes) -> pa.Array:
        offsets = np.zeros(count + 1, np.int32)
        np.cumsum(np.frombuffer(lengths, ">i4", count), out=offsets[1:])
        return pa.Array.from_buffers(kind, count, [None, pa.py_buffer(offsets), pa.py_buffer(values)])

    return pa.table(
        [
            np.frombuffer(page.positions, ">i8").astype(np.int64),
            pa.FixedSizeBinaryArray.from_buffers(pa.binary(16), count, [None, pa.py_buffer(page.ids)]),
            np.frombuffer(page.versions, ">i8").astype(np.int64),
            texts(pa.string(), page.topic_lengths, page.topics),
            texts(pa.binary(), page.state_lengths, page.states),
        ],
        EVENTS_SCHEMA,
    )


def checkpoints_table(checkpoints: Sequence[Any]) -> pa.Table:
    columns = [[getattr(c, n) for c in checkpoints] for n in ("position", "head", "signed_at", "key_id", "signature")]
    return pa.table(columns, CHECKPOINTS_SCHEMA)
