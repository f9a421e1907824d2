"""The database URLs: libpq's own (one host or several, any parameter libpq takes), the ledger's few parameters taken
out before libpq sees them, the pool sizes; and every refusal naming its variable and the forms expected."""

from __future__ import annotations

import pytest
from psycopg.conninfo import conninfo_to_dict

from hajj_ledger.api.sources import READ_URL_VARIABLE, standby_urls
from hajj_ledger.preflight import SetupError, check_store
from hajj_ledger.projections.schema import engine_for
from hajj_ledger.store.connections import Postgres, direct_url, is_read_only, split_urls, with_parameter
from hajj_ledger.store.recorders import store_env

URL = "postgresql://ledger:s%40cret@db.example:6432/hajj"
TWO = "postgresql://ledger@db-a:5432,db-b:5433/hajj"


def test_a_url_is_taken_apart_and_libpq_sees_all_of_it_but_the_ledgers_own() -> None:
    found = Postgres.from_url(f"{URL}?schema=season_1446&connect_timeout=3&pool_mode=transaction&sslmode=prefer")
    assert (found.host, found.port, found.dbname, found.user, found.password) == (
        "db.example", 6432, "hajj", "ledger", "s@cret"
    )  # fmt: skip
    assert (found.schema, found.connect_timeout, found.transaction_pooled) == ("season_1446", 3, True)
    assert conninfo_to_dict(found.conninfo) == {
        "host": "db.example", "port": "6432", "dbname": "hajj", "user": "ledger", "password": "s@cret",
        "connect_timeout": "3", "sslmode": "prefer",
    }  # fmt: skip


def test_several_hosts_are_libpqs_and_writes_go_to_the_one_that_takes_them() -> None:
    found = Postgres.from_url(TWO)
    assert found.hosts == [("db-a", 5432), ("db-b", 5433)] and found.name == "db-a:5432,db-b:5433"
    assert conninfo_to_dict(found.conninfo) == {
        "host": "db-a,db-b", "port": "5432,5433", "dbname": "hajj", "user": "ledger", "connect_timeout": "1",
        "target_session_attrs": "read-write",
    }  # fmt: skip
    # Said otherwise by the URL: as said. A standby's URL is taken as written (libpq's default: any).
    assert dict(Postgres.from_url(f"{TWO}?target_session_attrs=primary").parameters)["target_session_attrs"] == (
        "primary"
    )
    assert "target_session_attrs" not in dict(Postgres.from_url(TWO, READ_URL_VARIABLE, writes=False).parameters)
    # A port each, unsaid ones 5432; one port for every host; a socket directory; IPv6 in brackets.
    assert Postgres.from_url("postgresql://u@a,b:6432/db").hosts == [("a", 5432), ("b", 6432)]
    assert Postgres.from_url("postgresql://u@a,b/db?port=6432").hosts == [("a", 6432), ("b", 6432)]
    assert Postgres.from_url("postgresql:///db?host=/var/run/postgresql").hosts == [("/var/run/postgresql", 5432)]
    assert Postgres.from_url("postgresql://[::1]:5433/db").hosts == [("::1", 5433)]
    # Unsaid: the ledger's defaults, as before.
    assert dict(Postgres.from_url("postgresql:///").parameters) == {
        "host": "127.0.0.1", "user": "postgres", "dbname": "postgres", "connect_timeout": "1"
    }  # fmt: skip


def test_the_event_store_connects_with_the_whole_url() -> None:
    env = store_env(f"{TWO}?sslmode=disable&application_name=node-1")
    assert env["PERSISTENCE_MODULE"] == "hajj_ledger.store.postgres:LedgerPostgresFactory"
    assert conninfo_to_dict(env["POSTGRES_CONNINFO"])["host"] == "db-a,db-b"
    assert conninfo_to_dict(env["POSTGRES_CONNINFO"])["application_name"] == "node-1"


def test_direct_connections_start_in_the_schema_and_pooled_ones_prepare_nothing() -> None:
    assert Postgres.from_url(f"{URL}?schema=season_a").connect_kwargs() == {"options": "-csearch_path=season_a"}
    assert Postgres.from_url(URL).connect_kwargs() == {"options": "-csearch_path=public"}
    given = Postgres.from_url(f"{URL}?options=-cstatement_timeout%3D5000")
    assert given.connect_kwargs() == {"options": "-cstatement_timeout=5000 -csearch_path=public"}
    # PgBouncer refuses startup options; the server gives the search path there.
    assert Postgres.from_url(f"{URL}?pool_mode=transaction").connect_kwargs() == {"prepare_threshold": None}


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("sslmod=require", r"libpq refuses the URL \(invalid URI query parameter: \"sslmod\"\)"),
        ("pool_size=4", r"unknown parameter 'pool_size'.*HAJJ_LEDGER_WRITE_POOL_SIZE"),
        ("max_overflow=4", r"unknown parameter 'max_overflow'.*HAJJ_LEDGER_WRITE_POOL_OVERFLOW"),
        ("schema=Season", r"schema 'Season' is not a plain lower-case name"),
        ("schema=a;drop", r"schema 'a;drop'"),
        ("schema=pg_catalog", r"schema 'pg_catalog'"),
        ("pool_mode=statement", r"pool_mode 'statement' is not one of session, transaction"),
        ("connect_timeout=0", r"connect_timeout must be a whole number of at least 1"),
        ("connect_timeout=1.5", r"connect_timeout must be a whole number"),
        ("target_session_attrs=writable", r"target_session_attrs 'writable' is not one of any, read-write"),
    ],
)
def test_a_parameter_neither_libpq_nor_the_ledger_takes_is_refused_by_name(query: str, named: str) -> None:
    with pytest.raises(ValueError, match=rf"^HAJJ_LEDGER_DATABASE_URL: .*{named}"):
        store_env(f"{URL}?{query}")


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("var/x.sqlite3", "got 'var/x.sqlite3'; expected sqlite:///PATH (a file) or postgresql://USER"),
        ("mysql://db/ledger", "unsupported store mysql://...; expected sqlite:///PATH (a file) or postgresql://"),
        ("sqlite://var/x.sqlite3", "no file in 'sqlite://var/x.sqlite3'; expected sqlite:///PATH"),
    ],
)
def test_every_refused_url_names_its_variable_and_the_forms_expected(url: str, says: str) -> None:
    for refuse in (store_env, engine_for, lambda u: check_store(u, write=True)):
        with pytest.raises((ValueError, SetupError)) as refused:
            refuse(url)
        text = str(refused.value)
        assert text.startswith("HAJJ_LEDGER_DATABASE_URL: ") and "sqlite:///PATH" in text, text
        assert "postgresql://USER" in text, text
    with pytest.raises(ValueError, match=r"^HAJJ_LEDGER_DATABASE_URL: got 'var/x.sqlite3'; expected sqlite:///"):
        Postgres.from_url("var/x.sqlite3")
    with pytest.raises(ValueError, match=r"a file path\? then sqlite:///var/x.sqlite3"):
        store_env("var/x.sqlite3")
    with pytest.raises(ValueError, match=rf"^{READ_URL_VARIABLE}: got 'var/x'; expected postgresql://USER"):
        Postgres.from_url("var/x", READ_URL_VARIABLE)
    with pytest.raises(ValueError, match=r"^HAJJ_LEDGER_DIRECT_DATABASE_URL: got sqlite://\.\.\.; expected post"):
        Postgres.from_url("sqlite:///x", "HAJJ_LEDGER_DIRECT_DATABASE_URL")


def test_standby_urls_are_comma_separated_and_each_may_name_several_hosts(monkeypatch: pytest.MonkeyPatch) -> None:
    assert split_urls(f" {TWO}, postgresql://c/ledger ,") == [TWO, "postgresql://c/ledger"]
    monkeypatch.setenv(READ_URL_VARIABLE, f"{TWO}?target_session_attrs=standby,postgres://c,d/ledger")
    assert standby_urls() == [f"{TWO}?target_session_attrs=standby", "postgres://c,d/ledger"]
    assert with_parameter(TWO, "target_session_attrs", "any") == f"{TWO}?target_session_attrs=any"
    assert with_parameter(f"{TWO}?target_session_attrs=standby", "target_session_attrs", "any").endswith("standby")


def test_a_write_refused_by_a_standby_is_known_by_its_sqlstate() -> None:
    from psycopg import errors

    refused = errors.ReadOnlySqlTransaction("cannot execute INSERT in a read-only transaction")
    wrapped = RuntimeError("wrapped")
    wrapped.__cause__ = refused
    assert is_read_only(wrapped)
    assert not is_read_only(RuntimeError("no"))


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
    with pytest.raises(ValueError, match="HAJJ_LEDGER_WRITE_POOL_SIZE: input should be greater than or equal to 1"):
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


def test_a_direct_url_naming_several_hosts_reaches_the_one_that_takes_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The leader lock and LISTEN go through the direct URL: after a promotion they must find the new primary."""
    pooled = "postgresql://ledger@pgbouncer:6432/hajj?pool_mode=transaction"
    monkeypatch.setenv("HAJJ_LEDGER_DIRECT_DATABASE_URL", TWO)
    assert conninfo_to_dict(Postgres.from_url(direct_url(pooled)).conninfo)["target_session_attrs"] == "read-write"
    monkeypatch.setenv("HAJJ_LEDGER_DIRECT_DATABASE_URL", "postgresql://ledger@db-a:5432,db-b:x/hajj")
    with pytest.raises(ValueError, match=r"^HAJJ_LEDGER_DIRECT_DATABASE_URL: port '5432,x' is not a port number"):
        direct_url(pooled)


def test_a_url_libpq_refuses_is_told_as_a_refusal_not_as_the_database_away() -> None:
    from hajj_ledger.preflight import describe

    with pytest.raises(ValueError, match="libpq refuses") as refused:
        Postgres.from_url(f"{URL}?sslmod=require")
    line, code = describe(refused.value)
    assert code == 2 and line.startswith(
        'HAJJ_LEDGER_DATABASE_URL: libpq refuses the URL (invalid URI query parameter: "sslmod")'
    )
