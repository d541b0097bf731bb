"""Engine settings: SQLite in WAL mode with foreign keys, deferred reads and serialised writers.

On SQLite a transaction begins at its first statement. One that reads begins deferred: it reads
a WAL snapshot and never waits for, nor holds, the database's only write lock. The first
statement that writes (or a ``SELECT ... FOR UPDATE``, or a savepoint) takes the lock first:
a transaction that writes first begins with ``BEGIN IMMEDIATE``; in one that has read, the read
snapshot, which wrote nothing, is ended and the transaction goes on as ``BEGIN IMMEDIATE``.
Every statement from there sees the newest data, and no writer ever fails to upgrade a stale
snapshot ("database is locked"). Waiting for the lock is a short polling loop, never SQLite's
own back-off, which sleeps up to 100 ms at a time however soon the lock is free.
"""

from __future__ import annotations

import re
import select
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, cast

from flask import Flask
from sqlalchemy import event
from sqlalchemy.engine import Connection, CursorResult, Engine, ExceptionContext, Result
from sqlalchemy.exc import DisconnectionError

from core.config import JOB_THREADS
from core.extensions import db

SNAPSHOT_OPTION = "pacsdesk_snapshot_read"
# connection.info: the transaction holds the write lock (True), reads without it (False), sent nothing (None)
WRITE_LOCK = "pacsdesk_write_lock"
BUSY_TIMEOUT_MS = 30_000
LOCK_POLL_S = (0.0005, 0.004)  # first and longest pause between two tries for the write lock
# Statements that need the write lock (a savepoint is only taken by code about to write).
_WRITES = re.compile(r"\s*(INSERT|UPDATE|DELETE|REPLACE|CREATE|DROP|ALTER|SAVEPOINT)\b", re.IGNORECASE)


LIKE_ESCAPE = "\\"  # the escape character of the patterns ``contains_pattern`` makes


def contains_pattern(text: str) -> str:
    """A LIKE pattern for ``text`` anywhere, its wildcards escaped with LIKE_ESCAPE."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _sqlite_connect(dbapi_connection, connection_record) -> None:
    """WAL, foreign keys, a busy timeout; let SQLAlchemy's begin event open transactions."""
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    """Begin at the first statement: deferred for a read, ``BEGIN IMMEDIATE`` for a write."""
    connection.info[WRITE_LOCK] = None


def _wait_for_write_lock(raw: sqlite3.Connection) -> None:
    """``BEGIN IMMEDIATE``, retried every few milliseconds until the lock is free (30 s at most)."""
    raw.execute("PRAGMA busy_timeout=0")
    try:
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        pause = LOCK_POLL_S[0]
        while True:
            try:
                raw.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, LOCK_POLL_S[1])
    finally:
        raw.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")


def take_write_lock(connection: Connection) -> None:
    """On SQLite, hold the write lock from now to the end of this transaction (no-op elsewhere).

    A transaction that has read so far ends its snapshot and goes on as ``BEGIN IMMEDIATE``,
    so what it reads from here on is the newest data, which no other writer can change under it.
    """
    if connection.dialect.name != "sqlite":
        return
    began = connection.info.get(WRITE_LOCK, True)
    if began is True:
        return
    if connection.get_execution_options().get(SNAPSHOT_OPTION):
        raise RuntimeError("a snapshot connection only reads")
    raw = connection.connection.driver_connection
    assert raw is not None
    if began is False:
        raw.execute("COMMIT")  # nothing was written: this only lets go of the read snapshot
    connection.info[WRITE_LOCK] = True
    try:
        _wait_for_write_lock(raw)
    except BaseException:
        raw.execute("BEGIN")  # keep a transaction open for SQLAlchemy's rollback
        raise


def _writes(statement: str, context: Any) -> bool:
    """Whether a statement needs the write lock: a write, DDL, a savepoint or ``FOR UPDATE``."""
    if _WRITES.match(statement):
        return True
    compiled = getattr(context, "compiled", None)
    return getattr(getattr(compiled, "statement", None), "_for_update_arg", None) is not None


def _sqlite_before_execute(connection: Connection, cursor: Any, statement: str, parameters: Any,
                           context: Any, executemany: bool) -> None:
    """Open the transaction at its first statement; take the write lock before its first write.

    A transaction that writes first goes straight to ``BEGIN IMMEDIATE``: no snapshot is opened
    only to be given up at once.
    """
    began = connection.info.get(WRITE_LOCK, True)
    if began is True:
        return
    if _writes(statement, context):
        take_write_lock(connection)
    elif began is None:
        connection.info[WRITE_LOCK] = False
        raw = connection.connection.driver_connection
        assert raw is not None
        raw.execute("BEGIN")


@contextmanager
def sqlite_page_cache(connection: Connection, kib: int) -> Iterator[None]:
    """On SQLite, let the connection cache up to ``kib`` KiB of pages for one large statement.

    A range delete updates every index of its table at scattered places; the default 2 MB cache
    reads the same index pages from disk again and again. No-op on other databases.
    """
    if connection.dialect.name != "sqlite":
        yield
        return
    before = int(connection.exec_driver_sql("PRAGMA cache_size").scalar_one())
    connection.exec_driver_sql(f"PRAGMA cache_size=-{int(kib)}")
    try:
        yield
    finally:
        connection.exec_driver_sql(f"PRAGMA cache_size={before}")


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


def commit_keeping_loaded() -> None:
    """Commit, keeping what the request loaded (a list it is about to show) instead of reloading it."""
    session = db.session()
    session.expire_on_commit = False
    try:
        session.commit()
    finally:
        session.expire_on_commit = True


def rowcount(result: Result[Any]) -> int:
    """Rows an INSERT, UPDATE or DELETE touched (``Session.execute`` types every result as a plain Result)."""
    return cast("CursorResult[Any]", result).rowcount


def listen_once(target: Any, identifier: str, fn: Callable[..., Any]) -> None:
    """``event.listen`` that does nothing when ``fn`` already listens (apps are built many times)."""
    if not event.contains(target, identifier, fn):
        event.listen(target, identifier, fn)


def _postgres_checkout(dbapi_connection, connection_record, connection_proxy) -> None:
    """Refuse a pooled connection whose backend has gone; the pool opens a fresh one instead.

    An idle connection has nothing to read: a terminated or restarted backend leaves its last
    words (a FATAL message, the close) on the socket. Polling the socket without waiting finds
    them at no round trip's cost, where a ``SELECT 1`` before each transaction slows every write.
    Each connection is judged by its own socket, so a restart is found connection by connection.
    """
    if dbapi_connection.closed:
        raise DisconnectionError("the pooled database connection is closed")
    poller = select.poll()
    poller.register(dbapi_connection.fileno(), select.POLLIN | select.POLLPRI)
    if poller.poll(0):
        raise DisconnectionError("the database ended the pooled connection while it was idle")


def configure_engine(engine: Engine) -> None:
    """Attach dialect-specific connection settings to ``engine``."""
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        event.listen(engine, "before_cursor_execute", _sqlite_before_execute)
    elif engine.dialect.name == "postgresql":
        event.listen(engine, "checkout", _postgres_checkout)
        event.listen(engine, "handle_error", _postgres_primary_message)


def _postgres_primary_message(context: ExceptionContext) -> None:
    """Keep only PostgreSQL's primary message in an error's text: its DETAIL quotes the row's values.

    A unique violation reads "Key (patient_id)=(MRN-...) already exists"; the error's text goes to
    the log and a failed job's message, so only the first line stays there (``diag`` keeps the rest).
    """
    original, wrapped = context.original_exception, context.sqlalchemy_exception
    if not (original.args and isinstance(original.args[0], str) and "\n" in original.args[0]):
        return
    full, primary = original.args[0], original.args[0].split("\n", 1)[0]
    original.args = (primary, *original.args[1:])
    if wrapped is not None and wrapped.args and isinstance(wrapped.args[0], str):
        wrapped.args = (wrapped.args[0].replace(full, primary), *wrapped.args[1:])


def engine_options(database_url: str, threads: int) -> dict:
    """SQLAlchemy engine options for the configured database, its pool sized to ``threads``.

    Each thread holds one connection, and a snapshot read beside it a second one. The pool opens
    connections only when asked, so a floor of the job worker's threads costs a web worker nothing.
    """
    size = max(threads, JOB_THREADS)
    # A refused statement's error names its SQL, never its values: a ticket's text or a patient's
    # name would otherwise reach the log, an error page or a failed job's message.
    common = {"hide_parameters": True}
    pool = {"pool_size": size, "max_overflow": size}
    if database_url.startswith("sqlite"):
        in_memory = database_url in {"sqlite://", "sqlite:///:memory:"}  # one connection, no pool to size
        return {**common, "connect_args": {"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
                **({} if in_memory else pool)}
    # A terminated or restarted backend costs a reconnect, never a user's request (_postgres_checkout).
    return {**common, **pool, "connect_args": {"application_name": "pacsdesk"}}


def init_app(app: Flask) -> None:
    """Bind the database to ``app`` and configure its engine."""
    app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", engine_options(
        app.config["SQLALCHEMY_DATABASE_URI"], app.config["PACSDESK_WEB_THREADS"]))
    db.init_app(app)
    with app.app_context():
        configure_engine(db.engine)
