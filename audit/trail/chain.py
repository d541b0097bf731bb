"""The hash chain: the only writer of audit events, its verifier, and prefix purges."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flask import has_request_context, request
from flask_login import current_user
from sqlalchemy import delete, func, select
from sqlalchemy.engine import Connection

from audit.trail.enforcement import note_event
from audit.trail.models import GENESIS_HASH, AuditCheckpoint, AuditEvent, AuditPurgePermit
from core import audit_sink
from core.database import snapshot_connection
from core.extensions import db
from core.timeutil import utcnow

# pg_advisory_xact_lock key that serialises appends to the chain ("PACSDESK" in hex-ish).
CHAIN_LOCK_KEY = 0x5041_4353_4445_534B

OUTCOMES = ("success", "failure")

# Audit actions recorded here (registered by the package's init_app).
AUDIT_ACTIONS = {
    "audit.purged": "Audit events purged under the retention schedule",
}


def _iso(moment: datetime) -> str:
    """Canonical UTC timestamp with microseconds (``%Y-%m-%dT%H:%M:%S.%fZ``)."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return moment.isoformat(timespec="microseconds")[:26] + "Z"


# The hash payload is the compact JSON array of the fields (json.dumps with separators
# (",", ":") and ensure_ascii=False), written item by item: verification is the hot path.
_PAYLOAD_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
_encode_str = json.encoder.encode_basestring


def _json_item(value: Any) -> str:
    """One payload item, exactly as the JSON encoder writes it."""
    if value is None:
        return "null"
    if type(value) is str:
        return _encode_str(value)
    if type(value) is int:
        return str(value)
    return _PAYLOAD_ENCODER.encode(value)


def canonical_details(details: Mapping[str, Any] | None) -> str:
    """Serialise details deterministically; this exact text is stored and hashed."""
    return json.dumps(details or {}, sort_keys=True, separators=(",", ":"), default=str,
                      ensure_ascii=False)


def event_hash(
    seq: int,
    occurred_at: datetime,
    user_id: int | None,
    username: str | None,
    user_role: str | None,
    client_address: str | None,
    action: str,
    object_type: str | None,
    object_id: str | None,
    outcome: str,
    details: str,
    prev_hash: str,
) -> str:
    """SHA-256 over the canonical serialisation of an event's fields and the previous hash."""
    payload = "[" + ",".join(map(_json_item, (
        seq, _iso(occurred_at), user_id, username, user_role, client_address, action,
        object_type, object_id, outcome, details, prev_hash))) + "]"
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Recorded:
    """What was appended: chain position and hash."""

    seq: int
    hash: str


# Core statements built once: appends and verification run them on the hot path.
_EVENTS = AuditEvent.__table__
_TAIL = select(_EVENTS.c.seq, _EVENTS.c.hash).order_by(_EVENTS.c.seq.desc()).limit(1)
_INSERT = _EVENTS.insert()
_LOCK = select(func.pg_advisory_xact_lock(CHAIN_LOCK_KEY))


def _chain_tail() -> tuple[int, str]:
    """Position and hash the next event links to; the caller holds the chain lock."""
    last = db.session.execute(_TAIL).first()
    if last is not None:
        return last.seq, last.hash
    checkpoint = db.session.execute(
        select(AuditCheckpoint.purged_through_seq, AuditCheckpoint.last_purged_hash)
        .order_by(AuditCheckpoint.purged_through_seq.desc())
        .limit(1)
    ).first()
    if checkpoint is not None:
        return checkpoint.purged_through_seq, checkpoint.last_purged_hash
    return 0, GENESIS_HASH


def _lock_chain() -> None:
    """Serialise appends: an advisory lock on PostgreSQL; SQLite's write lock already holds."""
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(_LOCK)


def _request_actor() -> tuple[Any, str | None]:
    """The signed-in user and client address of the current request, if any."""
    if not has_request_context():
        return None, None
    user = current_user if getattr(current_user, "is_authenticated", False) else None
    return user, request.remote_addr


_UNSET: Any = object()


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
    if not audit_sink.is_action(action):
        raise ValueError(f"unknown audit action {action!r}: register it with register_actions")
    if outcome not in OUTCOMES:
        raise ValueError(f"audit outcome must be one of {OUTCOMES}, not {outcome!r}")
    request_user, request_address = _request_actor()
    if user is _UNSET:
        user = request_user
    if client_address is _UNSET:
        client_address = request_address
    user_id = user.id if user is not None else None
    name = user.username if user is not None else username
    role = user.role if user is not None else None
    text = canonical_details(details)
    oid = None if object_id is None else str(object_id)
    db.session.flush()  # the audit hook sees the changes this event covers before it is noted
    note_event(object_type, [*([] if oid is None else [oid]), *covers], user_id)
    _lock_chain()
    last_seq, prev = _chain_tail()
    seq = last_seq + 1
    at = utcnow()
    digest = event_hash(seq, at, user_id, name, role, client_address, action, object_type, oid,
                        outcome, text, prev)
    db.session.execute(
        _INSERT,
        {"seq": seq, "occurred_at": at, "user_id": user_id, "username": name, "user_role": role,
         "client_address": client_address, "action": action, "object_type": object_type,
         "object_id": oid, "outcome": outcome, "details": text, "prev_hash": prev,
         "hash": digest},
    )
    return Recorded(seq=seq, hash=digest)


@dataclass(frozen=True)
class ChainVerification:
    """The result of walking the chain."""

    ok: bool
    count: int
    head_seq: int
    head_hash: str
    first_bad_seq: int | None = None
    problem: str | None = None

    def summary(self) -> str:
        """One line a person can read."""
        if self.ok:
            return f"audit trail intact: {self.count} events, head #{self.head_seq} {self.head_hash}"
        return f"audit trail BROKEN at event #{self.first_bad_seq}: {self.problem}"


_WALK = select(
    _EVENTS.c.seq, _EVENTS.c.occurred_at, _EVENTS.c.user_id, _EVENTS.c.username,
    _EVENTS.c.user_role, _EVENTS.c.client_address, _EVENTS.c.action, _EVENTS.c.object_type,
    _EVENTS.c.object_id, _EVENTS.c.outcome, _EVENTS.c.details, _EVENTS.c.prev_hash,
    _EVENTS.c.hash,
).order_by(_EVENTS.c.seq)


def _purge_records(conn: Connection) -> dict[int, str]:
    """Purge boundaries vouched for by ``audit.purged`` events still in the chain."""
    found: dict[int, str] = {}
    rows = conn.execute(select(_EVENTS.c.details).where(_EVENTS.c.action == "audit.purged"))
    for (text,) in rows:
        data = json.loads(text)
        found[int(data["through_seq"])] = data["last_hash"]
    return found


def _start_of_chain(conn: Connection, first_seq: int) -> tuple[str | None, str | None]:
    """The hash the first remaining event must link to, or a problem."""
    if first_seq == 1:
        return GENESIS_HASH, None
    checkpoint = conn.execute(
        select(AuditCheckpoint.last_purged_hash)
        .where(AuditCheckpoint.purged_through_seq == first_seq - 1)
    ).scalar_one_or_none()
    if checkpoint is None:
        return None, f"events before #{first_seq} are missing and no retention purge explains it"
    if _purge_records(conn).get(first_seq - 1) != checkpoint:
        return None, (f"the retention checkpoint before #{first_seq} does not match "
                      "the purge recorded in the trail")
    return checkpoint, None


def verify_chain(batch_size: int = 20000) -> ChainVerification:
    """Walk the whole chain in order and report the first event that does not verify.

    Outside a transaction the walk reads a snapshot on a connection of its own, so on SQLite
    it never holds the write lock; inside one it sees the caller's uncommitted events too.
    """
    if db.session().in_transaction():
        return _walk(db.session.connection(), batch_size)
    with snapshot_connection() as conn:
        return _walk(conn, batch_size)


def _verified_head(conn: Connection) -> tuple[int, str, Any] | None:
    """The furthest head an earlier intact verification saw: (seq, hash, when), or None."""
    from audit.trail.chain_verification import ChainVerificationRun as Run

    row = conn.execute(
        select(Run.head_seq, Run.head_hash, Run.finished_at)
        .where(Run.ok.is_(True), Run.head_seq > 0)
        .order_by(Run.head_seq.desc()).limit(1)
    ).first()
    return (row[0], row[1], row[2]) if row else None


def _walk(conn: Connection, batch_size: int) -> ChainVerification:
    """Check every event's link and hash in chain order, and that nothing verified went missing."""
    anchor = _verified_head(conn)
    count = 0
    prev_seq: int | None = None
    prev_hash = GENESIS_HASH
    # Closed on every return: an early one (a broken link) must not leave the server-side cursor open.
    with conn.execute(_WALK.execution_options(yield_per=batch_size)) as rows:
        for row in rows:
            seq = row[0]
            if prev_seq is None:
                start, problem = _start_of_chain(conn, seq)
                if problem:
                    return ChainVerification(False, count, 0, GENESIS_HASH, seq, problem)
                prev_hash = start  # type: ignore[assignment]
            elif seq != prev_seq + 1:
                return ChainVerification(False, count, prev_seq, prev_hash, prev_seq + 1,
                                         f"event #{prev_seq + 1} is missing (next found is #{seq})")
            if row[11] != prev_hash:
                return ChainVerification(False, count, prev_seq or 0, prev_hash, seq,
                                         f"event #{seq} does not link to the event before it")
            if event_hash(*row[:12]) != row[12]:
                return ChainVerification(False, count, prev_seq or 0, prev_hash, seq,
                                         f"event #{seq} was altered after it was written")
            if anchor is not None and seq == anchor[0] and row[12] != anchor[1]:
                return ChainVerification(False, count, prev_seq or 0, prev_hash, seq,
                                         f"event #{seq} differs from the one verified on "
                                         f"{_iso(anchor[2])}: the trail was rewritten")
            prev_seq, prev_hash = seq, row[12]
            count += 1
    head = prev_seq or 0
    if anchor is not None and anchor[0] > head:
        return ChainVerification(False, count, head, prev_hash, head + 1,
                                 f"events #{head + 1} to #{anchor[0]} are missing: a verification "
                                 f"on {_iso(anchor[2])} saw the trail up to #{anchor[0]}")
    return ChainVerification(True, count, head, prev_hash)


def chain_head() -> tuple[int, str, int]:
    """Current head position, head hash and number of events, without verifying."""
    last = db.session.execute(
        select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)
    ).first()
    total = db.session.execute(select(func.count()).select_from(AuditEvent)).scalar_one()
    if last is None:
        return 0, GENESIS_HASH, 0
    return last.seq, last.hash, total


def purge_through(through_seq: int, reason: str) -> int:
    """Delete events up to ``through_seq`` and leave a checkpoint; returns how many went."""
    _lock_chain()
    boundary = db.session.execute(
        select(AuditEvent.hash).where(AuditEvent.seq == through_seq)
    ).scalar_one_or_none()
    if boundary is None:
        raise ValueError(f"no audit event #{through_seq} to purge through")
    db.session.add(AuditPurgePermit(id=1, through_seq=through_seq))
    db.session.flush()
    removed = db.session.execute(delete(AuditEvent).where(AuditEvent.seq <= through_seq)).rowcount
    db.session.execute(delete(AuditPurgePermit))
    db.session.add(AuditCheckpoint(purged_through_seq=through_seq, last_purged_hash=boundary,
                                   purged_count=removed))
    db.session.flush()
    record("audit.purged", object_type="audit_event",
           details={"through_seq": through_seq, "last_hash": boundary, "count": removed,
                    "reason": reason})
    return removed
