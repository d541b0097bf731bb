"""Database faults in a request: classified, answered plainly, and never a bare 500 after a commit.

A request either failed before its commit (nothing was saved: 503, try again), or its commit
went through and something later broke (the signal receivers, the redirect's reload, the
teardown's rollback on a dead connection): then a form post is told its change was saved and
a page view is asked to reload. When the connection dies during COMMIT itself, PostgreSQL may
have committed: the transaction id taken just before COMMIT is looked up (``txid_status``) on a
fresh connection to tell which.
"""

from __future__ import annotations

import errno
import sqlite3
from enum import StrEnum
from typing import Any

from flask import g, has_request_context
from sqlalchemy import event, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, PendingRollbackError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session

from core.extensions import db

COMMITTED = "pacsdesk_committed"
PENDING_XID = "pacsdesk_pending_xid"
SQLITE_FULL = 13
PG_DISK_FULL = "53100"
DBAPI_UNAVAILABLE = {"OperationalError", "InterfaceError"}


class Fault(StrEnum):
    """What kind of storage fault an exception is."""

    UNAVAILABLE = "unavailable"
    DISK_FULL = "disk_full"


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions that caused it (``orig``, ``__cause__``, ``__context__``)."""
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        item = todo.pop()
        if item is None or any(item is s for s in seen) or len(seen) > 20:
            continue
        seen.append(item)
        todo += [getattr(item, "orig", None), item.__cause__, item.__context__]
    return seen


def _is_disk_full(item: BaseException) -> bool:
    """Whether one exception (not its causes) says the disk is full."""
    if isinstance(item, OSError) and item.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if isinstance(item, sqlite3.Error):
        return getattr(item, "sqlite_errorcode", None) == SQLITE_FULL or "disk is full" in str(item)
    return getattr(item, "sqlstate", None) == PG_DISK_FULL


def classify(exc: BaseException) -> Fault | None:
    """The storage fault behind ``exc``, or None when it is something else (a bug)."""
    chain = _chain(exc)
    if any(_is_disk_full(item) for item in chain):
        return Fault.DISK_FULL
    for item in chain:
        if isinstance(item, DBAPIError) and item.connection_invalidated:
            return Fault.UNAVAILABLE
        if isinstance(item, (OperationalError, InterfaceError, PoolTimeout)):
            return Fault.UNAVAILABLE
        if any(cls.__name__ in DBAPI_UNAVAILABLE for cls in type(item).__mro__):  # a driver's own (PEP 249)
            return Fault.UNAVAILABLE
        if isinstance(item, PendingRollbackError) and item is not exc:
            return Fault.UNAVAILABLE
    if isinstance(exc, PendingRollbackError):
        return Fault.UNAVAILABLE
    return None


class Outcome(StrEnum):
    """Whether the request's change reached the database."""

    NOT_SAVED = "not_saved"
    SAVED = "saved"
    UNKNOWN = "unknown"


def _remember_xid(connection: Connection) -> None:
    """Just before COMMIT on PostgreSQL in a request: note the transaction id (None if it wrote nothing)."""
    if not has_request_context():
        return
    setattr(g, PENDING_XID, None)
    if connection.dialect.name != "postgresql":
        return
    raw = connection.connection.dbapi_connection
    assert raw is not None  # a connection in use has its driver connection
    cursor = raw.cursor()
    try:
        cursor.execute("SELECT txid_current_if_assigned()")
        row = cursor.fetchone()
    finally:
        cursor.close()
    setattr(g, PENDING_XID, row[0] if row else None)


def _committed(session: Session) -> None:
    """After a session's commit in a request: from now on, the request's change is saved."""
    if has_request_context():
        setattr(g, COMMITTED, True)
        setattr(g, PENDING_XID, None)


def _wrote(session: Session, _context: Any) -> None:
    """After a flush in a request: there are writes again that no commit has saved yet."""
    if has_request_context():
        setattr(g, COMMITTED, False)


def request_outcome() -> Outcome:
    """Whether this request's last writes were saved, asking PostgreSQL when COMMIT itself broke."""
    if getattr(g, COMMITTED, False):
        return Outcome.SAVED
    xid = getattr(g, PENDING_XID, None)
    if xid is None:
        return Outcome.NOT_SAVED
    try:
        with db.engine.connect() as connection:
            status = connection.execute(text("SELECT txid_status(:xid)"), {"xid": xid}).scalar()
    except Exception:
        return Outcome.UNKNOWN
    return Outcome.SAVED if status == "committed" else Outcome.NOT_SAVED


def discard_session() -> None:
    """Roll back and close the request's session; a dead connection makes that a no-op, not an error.

    The signed-in user that session loaded goes with it: anything after (an error page's navigation)
    loads them again in a fresh session.
    """
    try:
        db.session.remove()
    except Exception:  # the connection is gone; the pool drops it
        db.session.registry.clear()
    if has_request_context():
        g.pop("_login_user", None)


def install(engine: Engine) -> None:
    """Watch commits (the session's, and COMMIT on ``engine``'s connections)."""
    if not event.contains(Session, "after_commit", _committed):
        # First, so that a failing after-commit receiver cannot hide that the commit happened.
        event.listen(Session, "after_commit", _committed, insert=True)
    if not event.contains(Session, "after_flush", _wrote):
        event.listen(Session, "after_flush", _wrote)
    if not event.contains(engine, "commit", _remember_xid):
        event.listen(engine, "commit", _remember_xid)


def safe_teardown(app: Any) -> None:
    """Make the end of every request's session quiet when the connection is already dead."""
    funcs = app.teardown_appcontext_funcs
    for i, func in enumerate(funcs):
        if getattr(func, "__func__", None) is type(db)._teardown_session:
            funcs[i] = lambda _exc=None: discard_session()
