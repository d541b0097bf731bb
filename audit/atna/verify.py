"""Check the PACS access log against the batches sealed in the audit chain.

The ``atna.batch`` events are read from the chain (whose own verification proves them
unaltered); every stored message is read once, in batch order, and each batch's count and
SHA-256 are recomputed. A message edited, deleted or slipped in shows as a problem that names
its batch and the chain event that sealed it. Batches a retention run purged (``atna.purged``
events) are skipped; the open batch of a running receiver is not sealed yet.

Like the chain's own verification, an incremental check (``since_seq``) covers what was
sealed since the last verified head: the batches whose ``atna.batch`` event it walked, so its
cost follows what arrived, not the size of the log. The full walk (the nightly job,
``pacsdesk audit verify --full``) recomputes every batch and finds stored rows that no seal
names.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from audit.atna.models import AtnaBatch, AtnaMessage, AtnaMessageRef
from audit.atna.store import MESSAGE_COLUMNS, row_digest
from audit.trail.models import AuditEvent
from core.database import snapshot_connection
from core.extensions import db

READ_BATCH = 5000


@dataclass(frozen=True)
class BatchProblem:
    """A batch whose stored rows no longer match its seal."""

    batch_id: int
    audit_seq: int | None
    text: str

    def __str__(self) -> str:
        return self.text


def purged_batches(conn: Connection) -> set[int]:
    """Batches whose messages a retention run removed, as the chain records them."""
    found: set[int] = set()
    for (details,) in conn.execute(select(AuditEvent.details).where(AuditEvent.action == "atna.purged")):
        for first, last in json.loads(details).get("batches", []):
            found.update(range(int(first), int(last) + 1))
    return found


def _seals(conn: Connection, since_seq: int | None = None) -> dict[int, tuple[int, dict[str, Any]]]:
    """Sealed batches from the chain (those sealed after ``since_seq``, when given): id -> (seq, details)."""
    query = select(AuditEvent.seq, AuditEvent.details).where(AuditEvent.action == "atna.batch")
    if since_seq is not None:
        query = query.where(AuditEvent.seq > since_seq)
    seals = {}
    for seq, details in conn.execute(query):
        data = json.loads(details)
        seals[int(data["batch"])] = (seq, data)
    return seals


def _refs(conn: Connection, batch_ids: list[int] | None) -> dict[int, list[tuple[str, str]]]:
    """The extra identifiers of every message (of ``batch_ids`` only, when given)."""
    refs: dict[int, list[tuple[str, str]]] = {}
    query = select(AtnaMessageRef.message_id, AtnaMessageRef.kind, AtnaMessageRef.value)
    if batch_ids is not None:
        query = query.where(AtnaMessageRef.message_id.in_(
            select(AtnaMessage.id).where(AtnaMessage.batch_id.in_(batch_ids))))
    for message_id, kind, value in conn.execute(query):
        refs.setdefault(message_id, []).append((kind, value))
    return refs


def _stored(conn: Connection, batch_ids: list[int] | None = None) -> Iterator[tuple[int, int, str]]:
    """(batch id, count, hash) of the stored messages, batch by batch (of ``batch_ids`` only, when given)."""
    if batch_ids == []:
        return
    refs = _refs(conn, batch_ids)
    columns = [getattr(AtnaMessage, name) for name in MESSAGE_COLUMNS]
    query = select(*columns).order_by(AtnaMessage.batch_id, AtnaMessage.id)
    if batch_ids is not None:
        query = query.where(AtnaMessage.batch_id.in_(batch_ids))
    current: int | None = None
    hasher = hashlib.sha256()
    count = 0
    with conn.execute(query.execution_options(yield_per=READ_BATCH)) as rows:
        for row in rows.mappings():
            if row["batch_id"] != current:
                if current is not None:
                    yield current, count, hasher.hexdigest()
                current, hasher, count = row["batch_id"], hashlib.sha256(), 0
            hasher.update(row_digest(row, refs.get(row["id"], ())))
            count += 1
    if current is not None:
        yield current, count, hasher.hexdigest()


def batch_digest(conn: Connection, batch_id: int) -> tuple[int, str]:
    """Count and SHA-256 of one batch's stored messages, as a seal computes them."""
    for _, count, digest in _stored(conn, [batch_id]):
        return count, digest
    return 0, hashlib.sha256().hexdigest()


def check_batches(conn: Connection, since_seq: int | None = None) -> list[BatchProblem]:
    """Recompute sealed batches from their rows on ``conn``: all, or those sealed after ``since_seq``."""
    seals = _seals(conn, since_seq)
    purged = purged_batches(conn)
    open_batches = set(conn.execute(select(AtnaBatch.id).where(AtnaBatch.sealed_at.is_(None))).scalars())
    problems: list[BatchProblem] = []
    seen: set[int] = set()
    for batch_id, count, digest in _stored(conn, None if since_seq is None else sorted(seals)):
        seen.add(batch_id)
        if batch_id in purged or batch_id in open_batches:
            continue
        if batch_id not in seals:
            problems.append(BatchProblem(batch_id, None, f"PACS access log batch #{batch_id}: {count} stored "
                                         "messages belong to a batch that no atna.batch event sealed"))
            continue
        seq, sealed = seals[batch_id]
        if count != sealed["count"]:
            problems.append(BatchProblem(batch_id, seq, f"PACS access log batch #{batch_id} (sealed by "
                                         f"event #{seq}): {count} messages stored where {sealed['count']} "
                                         "were sealed; messages were deleted or added"))
        elif digest != sealed["hash"]:
            problems.append(BatchProblem(batch_id, seq, f"PACS access log batch #{batch_id} (sealed by "
                                         f"event #{seq}): a stored message was altered after it was "
                                         "received (the batch's hash differs)"))
    for batch_id, (seq, sealed) in sorted(seals.items()):
        if batch_id not in seen and batch_id not in purged and sealed["count"]:
            problems.append(BatchProblem(batch_id, seq, f"PACS access log batch #{batch_id} (sealed by "
                                         f"event #{seq}): all {sealed['count']} messages are missing"))
    return sorted(problems, key=lambda p: p.batch_id)


def verify_batches(since_seq: int | None = None) -> list[BatchProblem]:
    """The problems found in the PACS access log's sealed batches (all, or sealed after ``since_seq``)."""
    if db.session().in_transaction():
        return check_batches(db.session.connection(), since_seq)
    with snapshot_connection() as conn:
        return check_batches(conn, since_seq)
