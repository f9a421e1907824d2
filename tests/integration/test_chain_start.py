"""A node's processes start together on one SQLite file: the chain's tables, once made, are found by a read, so a
process starting while another holds the write lock starts at once (a serve worker once failed its start with
"database is locked" when its no-op CREATE TABLEs turned into a write behind another process's)."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from hajj_ledger.audit.chain import Chain
from hajj_ledger.ledger import JourneyLedger


def test_a_process_starting_beside_a_writer_finds_the_chain_made_without_writing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    with JourneyLedger(url) as first:
        Chain(first)  # the chain's tables made by the first process to start
    with closing(sqlite3.connect(tmp_path / "ledger.sqlite3", isolation_level=None)) as writer:
        writer.execute("BEGIN IMMEDIATE")  # another process in the middle of a write
        try:
            with JourneyLedger(url) as second:
                assert Chain(second).tables.seal_state()[0] == 0
        finally:
            writer.execute("ROLLBACK")
