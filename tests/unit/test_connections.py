"""The database URL's own parameters and the pool sizes: read once, checked, and never handed to libpq."""

from __future__ import annotations

import pytest
from psycopg.conninfo import conninfo_to_dict

from hajj_ledger.store.connections import Postgres, direct_url
from hajj_ledger.store.recorders import store_env

URL = "postgresql://ledger:s%40cret@db.example:6432/hajj"


def test_a_url_is_taken_apart_and_libpq_sees_only_where_to_connect() -> None:
    found = Postgres.from_url(f"{URL}?schema=season_1446&connect_timeout=3&pool_mode=transaction")
    assert (found.host, found.port, found.dbname, found.user, found.password) == (
        "db.example", 6432, "hajj", "ledger", "s@cret"
    )  # fmt: skip
    assert (found.schema, found.connect_timeout, found.transaction_pooled) == ("season_1446", 3, True)
    assert conninfo_to_dict(found.conninfo) == {
        "host": "db.example", "port": "6432", "dbname": "hajj", "user": "ledger", "password": "s@cret"
    }  # fmt: skip


def test_direct_connections_start_in_the_schema_and_pooled_ones_prepare_nothing() -> None:
    assert Postgres.from_url(f"{URL}?schema=season_a").connect_kwargs() == {"options": "-csearch_path=season_a"}
    assert Postgres.from_url(URL).connect_kwargs() == {"options": "-csearch_path=public"}
    # PgBouncer refuses startup options; the server gives the search path there.
    assert Postgres.from_url(f"{URL}?pool_mode=transaction").connect_kwargs() == {"prepare_threshold": None}


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("sslmode=require", r"unknown parameter 'sslmode'.*PGSSLMODE"),
        ("pool_size=4", r"unknown parameter 'pool_size'.*HAJJ_LEDGER_WRITE_POOL_SIZE"),
        ("max_overflow=4", r"unknown parameter 'max_overflow'.*HAJJ_LEDGER_WRITE_POOL_OVERFLOW"),
        ("schema=Season", r"schema 'Season' is not a plain lower-case name"),
        ("schema=a;drop", r"schema 'a;drop'"),
        ("schema=pg_catalog", r"schema 'pg_catalog'"),
        ("pool_mode=statement", r"pool_mode 'statement' is not one of session, transaction"),
        ("connect_timeout=0", r"connect_timeout must be a whole number of at least 1"),
        ("connect_timeout=1.5", r"connect_timeout must be a whole number"),
    ],
)
def test_a_parameter_the_ledger_does_not_take_is_refused_by_name(query: str, named: str) -> None:
    with pytest.raises(ValueError, match=rf"^HAJJ_LEDGER_DATABASE_URL: .*{named}"):
        store_env(f"{URL}?{query}")


def test_the_event_store_gets_the_pool_sizes_and_the_schema(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HAJJ_LEDGER_WRITE_POOL_SIZE", "5")
    monkeypatch.setenv("HAJJ_LEDGER_WRITE_POOL_OVERFLOW", "0")
    env = store_env(f"{URL}?schema=season_a")
    assert (env["POSTGRES_POOL_SIZE"], env["POSTGRES_MAX_OVERFLOW"], env["POSTGRES_SCHEMA"]) == ("5", "0", "season_a")
    assert env["POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT"] == "5"
    assert env["APPLICATION_RECORDER_TOPIC"] == "hajj_ledger.store.postgres:PostgresLedgerRecorder"
    pooled = store_env(f"{URL}?pool_mode=transaction")
    assert pooled["APPLICATION_RECORDER_TOPIC"] == "hajj_ledger.store.postgres:TransactionPooledLedgerRecorder"
    assert pooled["POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT"] == "0"  # a session setting: not through a pooler
    monkeypatch.setenv("HAJJ_LEDGER_WRITE_POOL_SIZE", "0")
    with pytest.raises(ValueError, match="HAJJ_LEDGER_WRITE_POOL_SIZE: expected a whole number of at least 1"):
        store_env(URL)


def test_what_needs_a_session_goes_to_the_direct_url(monkeypatch: pytest.MonkeyPatch) -> None:
    pooled = f"{URL}?schema=season_a&pool_mode=transaction"
    monkeypatch.delenv("HAJJ_LEDGER_DIRECT_DATABASE_URL", raising=False)
    assert direct_url(URL) == URL
    assert direct_url("sqlite:///var/x.sqlite3") == "sqlite:///var/x.sqlite3"
    with pytest.raises(ValueError, match="set HAJJ_LEDGER_DIRECT_DATABASE_URL"):
        direct_url(pooled)
    monkeypatch.setenv("HAJJ_LEDGER_DIRECT_DATABASE_URL", "postgresql://ledger@db.example:5432/hajj?schema=season_a")
    assert direct_url(pooled) == "postgresql://ledger@db.example:5432/hajj?schema=season_a"
    monkeypatch.setenv("HAJJ_LEDGER_DIRECT_DATABASE_URL", "postgresql://ledger@db.example:5432/hajj")
    with pytest.raises(ValueError, match="same schema"):
        direct_url(pooled)
    monkeypatch.setenv("HAJJ_LEDGER_DIRECT_DATABASE_URL", pooled)
    with pytest.raises(ValueError, match="must reach PostgreSQL directly"):
        direct_url(pooled)
