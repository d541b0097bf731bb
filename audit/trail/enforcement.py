"""The session hook that makes an unaudited change impossible, and writes every object's history.

A change (insert, update, delete) to a model that declares ``__audit__`` (``core.auditing``)
must be covered by an audit event about the same object, written in the same transaction
through ``audit.record``; otherwise the commit is refused and the transaction rolls back.
Statements that change audited tables in bulk (``session.execute(update(...))``, an import's
insert) must be covered by an event about the same kind of object. The hook also turns the
tracked attributes' changes into history lines (``ObjectChange``), attributed to the user of
the audit event that covers them: history is written here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any, cast

from sqlalchemy import Table, insert, inspect
from sqlalchemy.orm import Mapper, ORMExecuteState, Session, UOWTransaction

from audit.trail.models import ObjectChange
from core.auditing import AuditSpec, audit_spec
from core.database import listen_once
from core.extensions import Model, db
from core.timeutil import utcnow

_KEY = "pacsdesk_audit"


class AuditMissing(RuntimeError):
    """A change to an audited model reached the commit without its audit event."""


@dataclass
class _Pending:
    """One history line waiting for its actor (the user of the covering audit event)."""

    key: tuple[str, str]
    object_type: str
    object_id: int
    field: str
    old: str | None
    new: str | None
    at: datetime


class _State:
    """What a transaction changed and what its audit events covered."""

    def __init__(self) -> None:
        self.needed: dict[tuple[str, str], str] = {}
        self.needed_types: set[str] = set()
        self.done: dict[tuple[str, str], int | None] = {}
        self.done_types: set[str] = set()
        self.history: dict[tuple[str, str], list[_Pending]] = {}
        self.new_objects: list[Any] = []
        self.chain_locked = False


def _state(session: Session) -> _State:
    """The transaction's bookkeeping (kept in ``session.info`` until commit or rollback)."""
    state = session.info.get(_KEY)
    if state is None:
        state = session.info[_KEY] = _State()
    return state


def note_event(object_type: str | None, object_ids: Iterable[Any], user_id: int | None) -> None:
    """Called by ``audit.record`` (after its flush): an event about these objects is in this transaction.

    The objects' history lines noted so far are written now, attributed to the event's user.
    """
    if object_type is None:
        return
    session = db.session()
    state = _state(session)
    state.done_types.add(object_type)
    lines = []
    for object_id in object_ids:
        key = (object_type, str(object_id))
        state.done.setdefault(key, user_id)
        lines += state.history.pop(key, [])
    _add_history(session, state, lines)


def _add_history(session: Session, state: _State, lines: list[_Pending]) -> None:
    """Insert history lines, attributed to the user of the event that covers each."""
    if lines:
        session.execute(insert(ObjectChange), [
            {"object_type": p.object_type, "object_id": p.object_id, "changed_at": p.at,
             "user_id": state.done.get(p.key), "field": p.field, "old_value": p.old, "new_value": p.new}
            for p in lines])


def _key(spec: AuditSpec, obj: Any) -> tuple[str, str]:
    """The (object type, object id) an audit event about ``obj`` names."""
    return spec.object_type, str(spec.object_id(obj))


def _describe(obj: Any, key: tuple[str, str], change: str) -> str:
    """Words for a refusal, naming the object but none of its values."""
    return f"{type(obj).__name__} ({key[0]} {key[1]}) {change}"


def _changed(obj: Any, spec: AuditSpec) -> list[str]:
    """Attributes of ``obj`` with unflushed changes, bookkeeping left out."""
    state = inspect(obj)
    return [attr.key for attr in state.mapper.column_attrs
            if attr.key not in spec.bookkeeping and state.attrs[attr.key].history.has_changes()]


def _lock_chain_once(session: Session) -> None:
    """On PostgreSQL, take the chain's lock before a transaction's first row lock on an audited model.

    Such a transaction appends to the chain anyway; taking that lock first means two writers never
    wait on each other in opposite orders (a row, then the chain; the chain, then the row).
    """
    state = _state(session)
    if state.chain_locked:
        return
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        from audit.trail.chain import lock_chain

        lock_chain(connection)
    state.chain_locked = True


def _before_flush(session: Session, flush_context: UOWTransaction, instances: Any) -> None:
    """Note audited updates and deletes, and the history lines of tracked attributes."""
    state = _state(session)
    now = utcnow()
    if any(audit_spec(obj) is not None for obj in (*session.new, *session.dirty, *session.deleted)):
        _lock_chain_once(session)
    with session.no_autoflush:
        for obj in session.dirty:
            spec = audit_spec(obj)
            if spec is None or not session.is_modified(obj):
                continue
            changed = _changed(obj, spec)
            if not changed:
                continue
            key = _key(spec, obj)
            state.needed.setdefault(key, _describe(obj, key, f"changed ({', '.join(sorted(changed))})"))
            if spec.history is None:
                continue
            owner_type, owner_id = spec.history(obj)
            attrs = inspect(obj).attrs
            for tracked in spec.tracked:
                history = attrs[tracked.attribute].history
                if not history.has_changes():
                    continue
                old = history.deleted[0] if history.deleted else None
                new = history.added[0] if history.added else None
                if old == new:
                    continue
                state.history.setdefault(key, []).append(_Pending(
                    key, owner_type, owner_id, tracked.key, tracked.show(old), tracked.show(new), now))
        for obj in session.deleted:
            spec = audit_spec(obj)
            if spec is not None:
                key = _key(spec, obj)
                state.needed.setdefault(key, _describe(obj, key, "deleted"))
        state.new_objects = [obj for obj in session.new if audit_spec(obj) is not None]


def _after_flush(session: Session, flush_context: UOWTransaction) -> None:
    """Note audited inserts now that they have their ids, with their "created" history lines."""
    state = _state(session)
    now = utcnow()
    with session.no_autoflush:
        for obj in state.new_objects:
            spec = audit_spec(obj)
            assert spec is not None
            key = _key(spec, obj)
            state.needed.setdefault(key, _describe(obj, key, "created"))
            if spec.created is not None and spec.history is not None:
                owner_type, owner_id = spec.history(obj)
                field, text = spec.created(obj)
                line = _Pending(key, owner_type, owner_id, field, None, text, now)
                state.history.setdefault(key, []).append(line)
    state.new_objects = []


@cache
def _audited_tables() -> dict[str, str]:
    """Audited tables by name, with the object type their events name (computed once per set of models)."""
    found = {}
    for mapper in Model.registry.mappers:
        spec = getattr(mapper.class_, "__audit__", None)
        if isinstance(spec, AuditSpec):
            found[cast(Table, mapper.local_table).name] = spec.object_type
    return found


def _forget_tables(mapper: Mapper, class_: type) -> None:
    """A model was mapped: compute the audited tables again at their next use."""
    _audited_tables.cache_clear()


def _on_execute(execute_state: ORMExecuteState) -> None:
    """Bulk INSERT/UPDATE/DELETE statements on audited tables need an event about that kind of object.

    Such a statement, and a row lock on an audited model (SELECT ... FOR UPDATE), is preceded by
    the chain's lock, as a flush is.
    """
    if execute_state.is_select and getattr(execute_state.statement, "_for_update_arg", None) is not None:
        mapper = execute_state.bind_mapper
        if mapper is not None and isinstance(getattr(mapper.class_, "__audit__", None), AuditSpec):
            _lock_chain_once(execute_state.session)
        return
    if not (execute_state.is_insert or execute_state.is_update or execute_state.is_delete):
        return
    table = getattr(execute_state.statement, "table", None)
    object_type = _audited_tables().get(getattr(table, "name", ""))
    if object_type is not None:
        _lock_chain_once(execute_state.session)
        _state(execute_state.session).needed_types.add(object_type)


def _before_commit(session: Session) -> None:
    """Write the history lines, then refuse the commit if any audited change has no audit event."""
    session.flush()  # the commit's own flush comes after this hook: see its changes first
    state = session.info.get(_KEY)
    if state is None:
        return
    covered = [key for key in state.history if key in state.done]
    if covered:
        _add_history(session, state, [line for key in covered for line in state.history.pop(key)])
    missing = [what for key, what in state.needed.items() if key not in state.done]
    missing += [f"a bulk change of {kind} records" for kind in sorted(state.needed_types - state.done_types)]
    if missing:
        raise AuditMissing("refused: changed without an audit event in the same transaction: "
                           + "; ".join(sorted(missing)[:10]))


def _forget(session: Session, *args: Any) -> None:
    """A transaction ended: start the next one with a clean slate."""
    session.info.pop(_KEY, None)


def install() -> None:
    """Attach the hook to every session (once per process; apps share the Session class)."""
    listen_once(Mapper, "after_mapper_constructed", _forget_tables)
    listen_once(Session, "before_flush", _before_flush)
    listen_once(Session, "after_flush", _after_flush)
    listen_once(Session, "do_orm_execute", _on_execute)
    listen_once(Session, "before_commit", _before_commit)
    listen_once(Session, "after_commit", _forget)
    listen_once(Session, "after_rollback", _forget)
