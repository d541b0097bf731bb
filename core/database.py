"""Engine settings: SQLite in WAL mode with foreign keys and serialised writers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, cast

from flask import Flask
from sqlalchemy import event
from sqlalchemy.engine import Connection, CursorResult, Engine, Result

from core.extensions import db

SNAPSHOT_OPTION = "pacsdesk_snapshot_read"


def _sqlite_connect(dbapi_connection, connection_record) -> None:
    """WAL, foreign keys, a busy timeout; let SQLAlchemy's begin event open transactions."""
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(connection) -> None:
    """Take the write lock at BEGIN so a read-then-write never fails on a stale snapshot.

    A connection opened by ``snapshot_connection`` only reads: it begins a deferred
    transaction, a WAL snapshot that never blocks writers however long it runs.
    """
    if connection.get_execution_options().get(SNAPSHOT_OPTION):
        connection.exec_driver_sql("BEGIN")
    else:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


@contextmanager
def snapshot_connection() -> Iterator[Connection]:
    """A connection of its own for a long read (chain walk, report), never holding a write lock."""
    with db.engine.connect() as connection:
        yield connection.execution_options(**{SNAPSHOT_OPTION: True})


@contextmanager
def outside_transaction() -> Iterator[None]:
    """End the session's transaction for a network wait (a C-ECHO, an LDAP bind, an SMTP send).

    On SQLite every write transaction holds the database's only write lock, and on PostgreSQL an
    idle transaction holds a connection and its row locks: nobody may wait for the network
    inside one. Pending changes are an error (they would be lost), never silently committed.
    Objects loaded before are expired; reload what you need afterwards.
    """
    session = db.session()
    if session.new or session.dirty or session.deleted:
        raise RuntimeError("outside_transaction: commit or discard the pending changes first")
    session.rollback()
    yield
    if session.in_transaction() and (session.new or session.dirty or session.deleted):
        raise RuntimeError("outside_transaction: something was written during the network wait")


def rowcount(result: Result[Any]) -> int:
    """Rows an INSERT, UPDATE or DELETE touched (``Session.execute`` types every result as a plain Result)."""
    return cast("CursorResult[Any]", result).rowcount


def listen_once(target: Any, identifier: str, fn: Callable[..., Any]) -> None:
    """``event.listen`` that does nothing when ``fn`` already listens (apps are built many times)."""
    if not event.contains(target, identifier, fn):
        event.listen(target, identifier, fn)


def configure_engine(engine: Engine) -> None:
    """Attach dialect-specific connection settings to ``engine``."""
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)


def engine_options(database_url: str) -> dict:
    """SQLAlchemy engine options for the configured database."""
    if database_url.startswith("sqlite"):
        return {"connect_args": {"timeout": 30, "check_same_thread": False}}
    return {"pool_pre_ping": True, "pool_size": 10, "max_overflow": 10}


def init_app(app: Flask) -> None:
    """Bind the database to ``app`` and configure its engine."""
    app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS",
                          engine_options(app.config["SQLALCHEMY_DATABASE_URI"]))
    db.init_app(app)
    with app.app_context():
        configure_engine(db.engine)
