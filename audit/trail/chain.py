"""The keyed chain: the only writer of audit events, the chain's head, and prefix purges.

Every event is sealed with HMAC-SHA256 under the audit key in force (``sealing``), linked to
the event before by that event's hash, and carries the key's id; the key itself lives outside
the database (``keys``). Verification is in ``verify`` (re-exported here).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flask import current_app, has_request_context, request
from flask_login import current_user
from sqlalchemy import delete, func, select
from sqlalchemy.engine import Connection

from audit.trail.anchors import anchor_path, append_anchor
from audit.trail.enforcement import note_event
from audit.trail.keys import LEGACY_KEY_ID, AuditKey, keyring
from audit.trail.models import GENESIS_HASH, AuditCheckpoint, AuditEvent, AuditPurgePermit
from audit.trail.sealing import canonical_details, checkpoint_payload, event_payload, iso_utc
from audit.trail.verify import ChainVerification, verify_chain
from core import audit_sink
from core.database import sqlite_page_cache, take_write_lock
from core.extensions import db
from core.timeutil import utcnow

__all__ = ["OUTCOMES", "ChainVerification", "Recorded", "canonical_details", "chain_head",
           "next_link", "purge_through", "record", "record_each", "verify_chain"]

# pg_advisory_xact_lock key that serialises appends to the chain ("PACSDESK" in hex-ish).
CHAIN_LOCK_KEY = 0x5041_4353_4445_534B

OUTCOMES = ("success", "failure")
PURGE_CACHE_KIB = 32 * 1024  # SQLite's page cache while a purge deletes a range of events
APPEND_BATCH = 5_000  # events sealed and inserted per statement when many are appended at once

# Audit actions recorded here (registered by the package's init_app).
AUDIT_ACTIONS = {
    "audit.purged": "Audit events purged under the retention schedule",
}


@dataclass(frozen=True)
class Recorded:
    """What was appended: chain position and hash."""

    seq: int
    hash: str


# Core statements built once: appends run them on the hot path.
_EVENTS = AuditEvent.__table__
_TAIL = select(_EVENTS.c.seq, _EVENTS.c.hash, _EVENTS.c.key_id).order_by(_EVENTS.c.seq.desc()).limit(1)
_INSERT = _EVENTS.insert()
_LOCK = select(func.pg_advisory_xact_lock(CHAIN_LOCK_KEY))


@dataclass(frozen=True)
class Link:
    """Where the next event goes: its position, the hash it links to, the key that seals it."""

    seq: int
    prev_hash: str
    key: AuditKey


def next_link(conn: Connection) -> Link:
    """The next event's position, previous hash and key in force; the caller holds the chain lock.

    The key in force is the newest event's (a rotation switches it); an empty trail, or one
    whose newest event predates keys, starts with the keyring's newest key.
    """
    ring = keyring()
    last = conn.execute(_TAIL).first()
    if last is None:
        last = conn.execute(
            select(AuditCheckpoint.purged_through_seq, AuditCheckpoint.last_purged_hash,
                   AuditCheckpoint.key_id)
            .order_by(AuditCheckpoint.purged_through_seq.desc()).limit(1)).first()
    if last is None:
        return Link(1, GENESIS_HASH, ring.newest)
    seq, prev, key_id = last
    key = ring.newest if key_id == LEGACY_KEY_ID else ring.require(key_id, "seals the newest event")
    return Link(seq + 1, prev, key)


def lock_chain(conn: Connection) -> None:
    """Serialise appends: PostgreSQL's advisory lock, SQLite's write lock (taken before the tail is read)."""
    if conn.dialect.name == "postgresql":
        conn.execute(_LOCK)
    else:
        take_write_lock(conn)


def _request_actor() -> tuple[Any, str | None]:
    """The signed-in user and client address of the current request, if any."""
    if not has_request_context():
        return None, None
    user = current_user if getattr(current_user, "is_authenticated", False) else None
    return user, request.remote_addr


_UNSET: Any = object()


def _actor(action: str, outcome: str, user: Any, client_address: str | None) -> tuple[Any, str | None]:
    """Check the action and outcome; the acting user and address (the request's unless given)."""
    if not audit_sink.is_action(action):
        raise ValueError(f"unknown audit action {action!r}: register it with register_actions")
    if outcome not in OUTCOMES:
        raise ValueError(f"audit outcome must be one of {OUTCOMES}, not {outcome!r}")
    request_user, request_address = _request_actor()
    return (request_user if user is _UNSET else user,
            request_address if client_address is _UNSET else client_address)


def record(
    action: str,
    *,
    object_type: str | None = None,
    object_id: Any = None,
    outcome: str = "success",
    details: Mapping[str, Any] | None = None,
    user: Any = _UNSET,
    username: str | None = None,
    client_address: str | None = _UNSET,
    covers: Iterable[Any] = (),
) -> Recorded:
    """Append an audit event in the caller's transaction; it commits or rolls back with it.

    ``covers`` names more objects of ``object_type`` the event is about (an import's assets),
    for the audit hook that refuses unaudited changes.
    """
    user, client_address = _actor(action, outcome, user, client_address)
    user_id = user.id if user is not None else None
    oid = None if object_id is None else str(object_id)
    db.session.flush()  # the audit hook sees the changes this event covers before it is noted
    note_event(object_type, [*([] if oid is None else [oid]), *covers], user_id)
    return append_event(
        db.session.connection(), action, object_type=object_type, object_id=oid, outcome=outcome,
        details=canonical_details(details), user_id=user_id,
        username=user.username if user is not None else username,
        user_role=user.role if user is not None else None, client_address=client_address)


def record_each(action: str, object_type: str, events: Sequence[tuple[Any, Mapping[str, Any] | None]],
                *, user: Any = _UNSET, outcome: str = "success") -> list[Recorded]:
    """Append one event per (object id, details), as ``record`` would, with one chain lock and one insert.

    For a change of many objects at once (an import): each object keeps an event of its own,
    and the chain's lock is held for a single statement instead of one per object.
    """
    user, client_address = _actor(action, outcome, user, _UNSET)
    user_id = user.id if user is not None else None
    ids = [str(object_id) for object_id, _ in events]
    db.session.flush()
    note_event(object_type, ids, user_id)
    return append_events(
        db.session.connection(), action, [(oid, canonical_details(details)) for oid, (_, details)
                                          in zip(ids, events, strict=True)],
        object_type=object_type, outcome=outcome, user_id=user_id,
        username=user.username if user is not None else None,
        user_role=user.role if user is not None else None, client_address=client_address)


def append_event(conn: Connection, action: str, *, object_type: str | None, object_id: str | None,
                 outcome: str, details: str, user_id: int | None, username: str | None,
                 user_role: str | None, client_address: str | None,
                 key: AuditKey | None = None) -> Recorded:
    """Lock the chain, seal the event after its tail and insert it (``key``: a rotation's new key)."""
    [recorded] = append_events(conn, action, [(object_id, details)], object_type=object_type,
                               outcome=outcome, user_id=user_id, username=username, user_role=user_role,
                               client_address=client_address, key=key)
    return recorded


def append_events(conn: Connection, action: str, events: Sequence[tuple[str | None, str]], *,
                  object_type: str | None, outcome: str, user_id: int | None, username: str | None,
                  user_role: str | None, client_address: str | None,
                  key: AuditKey | None = None) -> list[Recorded]:
    """Lock the chain, seal each (object id, canonical details) after the one before, insert them all."""
    if not events:
        return []
    lock_chain(conn)
    link = next_link(conn)
    seal_key = key or link.key
    at = utcnow()
    at_text = iso_utc(at)
    prev, recorded = link.prev_hash, []
    for start in range(0, len(events), APPEND_BATCH):
        rows = []
        batch = events[start:start + APPEND_BATCH]
        for seq, (object_id, details) in enumerate(batch, start=link.seq + start):
            digest = seal_key.mac(event_payload(
                seq, at_text, user_id, username, user_role, client_address, action, object_type,
                object_id, outcome, details, prev, seal_key.key_id))
            rows.append({"seq": seq, "occurred_at": at, "user_id": user_id, "username": username,
                         "user_role": user_role, "client_address": client_address, "action": action,
                         "object_type": object_type, "object_id": object_id, "outcome": outcome,
                         "details": details, "prev_hash": prev, "hash": digest, "key_id": seal_key.key_id})
            recorded.append(Recorded(seq=seq, hash=digest))
            prev = digest
        conn.execute(_INSERT, rows if len(rows) > 1 else rows[0])
    return recorded


def chain_head() -> tuple[int, str, int]:
    """Current head position, head hash and number of events, without verifying."""
    last = db.session.execute(
        select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)
    ).first()
    total = db.session.execute(select(func.count()).select_from(AuditEvent)).scalar_one()
    if last is None:
        return 0, GENESIS_HASH, 0
    return last.seq, last.hash, total


def purge_through(through_seq: int, reason: str, run_id: int | None = None) -> int:
    """Delete events up to ``through_seq`` under a sealed, anchored checkpoint; how many went.

    The checkpoint names the range, the boundary's hash and the retention run, sealed with the
    audit key in force; the anchor log gets the same facts before the caller commits, and the
    chain gets an ``audit.purged`` event. Verification accepts the missing prefix only with all
    three.
    """
    conn = db.session.connection()
    lock_chain(conn)
    boundary = conn.execute(select(_EVENTS.c.hash).where(_EVENTS.c.seq == through_seq)).scalar()
    if boundary is None:
        raise ValueError(f"no audit event #{through_seq} to purge through")
    first = conn.execute(select(func.min(_EVENTS.c.seq))).scalar_one()
    key = next_link(conn).key
    permits = AuditPurgePermit.__table__
    conn.execute(permits.insert().values(id=1, through_seq=through_seq))
    with sqlite_page_cache(conn, PURGE_CACHE_KIB):
        removed = conn.execute(delete(_EVENTS).where(_EVENTS.c.seq <= through_seq)).rowcount
    conn.execute(delete(permits))
    mac = key.mac(checkpoint_payload(first, through_seq, boundary, removed, run_id, key.key_id))
    db.session.add(AuditCheckpoint(purged_through_seq=through_seq, last_purged_hash=boundary,
                                   purged_count=removed, from_seq=first, run_id=run_id,
                                   key_id=key.key_id, mac=mac))
    db.session.flush()
    record("audit.purged", object_type="audit_event",
           details={"from_seq": first, "through_seq": through_seq, "last_hash": boundary,
                    "count": removed, "run_id": run_id, "reason": reason})
    append_anchor(anchor_path(current_app.config), keyring(), "purge", through_seq, boundary,
                  removed, from_seq=first, run=run_id)
    return removed
