"""The PACS access log as a retention record class (6-year floor): whole batches, whole months on PostgreSQL.

On PostgreSQL a record of this class is one month partition: it is due when the whole month lies
before the policy's cutoff, and is destroyed by dropping the partition (and its identifiers'
partition) -- no row-by-row delete of millions of messages. On SQLite the records are messages,
and only messages of batches received entirely before the cutoff are due, and a hold on part of a
batch keeps all of it, so batches go whole.
Each purge is an ``atna.purged`` audit event naming the batches it removed, which the batch
verification then skips. Holds on this class for a date range keep the months or messages they
touch.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, DateTime, delete, false, func, literal, select, text, union_all

from audit.atna.models import PARTITION_NAME, AtnaBatch, AtnaMessage, AtnaMessageRef
from audit.retention.engine import add_months
from audit.retention.registry import HoldScope, RecordClass
from audit.trail.chain import record
from core.extensions import db

KEY = "atna_messages"
DOCUMENTATION_RULE = "45 CFR 164.316(b)(2) (keep documentation 6 years)"

# Audit actions recorded here (registered by the package's init_app).
AUDIT_ACTIONS = {"atna.purged": "PACS audit messages destroyed under the retention schedule"}


def _postgres() -> bool:
    """Whether the log is partitioned (PostgreSQL)."""
    return db.session.get_bind().dialect.name == "postgresql"


PARTITIONS = text("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                  "WHERE i.inhparent = 'atna_message'::regclass")


def month_partitions() -> list[tuple[int, datetime]]:
    """(YYYYMM, first instant) of every monthly partition of atna_message, oldest first (PostgreSQL)."""
    months = []
    for name in db.session.execute(PARTITIONS).scalars():
        if PARTITION_NAME.match(name):
            stamp = int(name.rsplit("_", 1)[1])
            months.append((stamp, datetime(stamp // 100, stamp % 100, 1, tzinfo=UTC)))
    return sorted(months)


def _candidates(cutoff: datetime, anchor: str) -> Any:
    """Months entirely before ``cutoff`` (PostgreSQL), or messages of batches entirely before it."""
    if _postgres():
        due = [(month, start) for month, start in month_partitions() if add_months(start, 1) <= cutoff]
        if not due:
            return select(literal(0, BigInteger).label("id"), literal(None, DateTime(True)).label("at")) \
                .where(false())
        return union_all(*(select(literal(month, BigInteger).label("id"),
                                  literal(start, DateTime(True)).label("at")) for month, start in due))
    whole = select(AtnaBatch.id).where(AtnaBatch.sealed_at.is_not(None), AtnaBatch.last_received < cutoff)
    return select(AtnaMessage.id, AtnaMessage.received_at).where(
        AtnaMessage.received_at < cutoff, AtnaMessage.batch_id.in_(whole))


def _range_held(start: datetime, end: datetime, holds: Sequence[HoldScope]) -> bool:
    """Whether a class hold's date range touches [start, end)."""
    for scope in holds:
        if scope.record_class != KEY or scope.object_type:
            continue
        if (scope.start is None or scope.start < end) and (scope.end is None or scope.end >= start):
            return True
    return False


def _held(ids: Sequence[int], holds: Sequence[HoldScope]) -> set[int]:
    """Months (PostgreSQL) or messages a hold on this class covers."""
    if _postgres():
        found = set()
        for month in ids:
            start = datetime(month // 100, month % 100, 1, tzinfo=UTC)
            if _range_held(start, add_months(start, 1), holds):
                found.add(month)
        return found
    # A batch goes whole or stays whole: its seal in the trail covers every row, and a purged batch
    # is no longer verified, so one held message keeps the rest of its batch (and their proof).
    rows = db.session.execute(select(AtnaMessage.id, AtnaBatch.first_received, AtnaBatch.last_received)
                              .join(AtnaBatch, AtnaBatch.id == AtnaMessage.batch_id)
                              .where(AtnaMessage.id.in_(ids)))
    return {row.id for row in rows if row.first_received is not None and row.last_received is not None
            and _range_held(row.first_received, row.last_received + timedelta(microseconds=1), holds)}


def _ranges(ids: Sequence[int]) -> list[list[int]]:
    """Sorted ids as [first, last] runs."""
    runs: list[list[int]] = []
    for value in sorted(set(ids)):
        if runs and value == runs[-1][1] + 1:
            runs[-1][1] = value
        else:
            runs.append([value, value])
    return runs


def _purge(ids: Sequence[int]) -> int:
    """Drop whole month partitions (PostgreSQL) or delete messages; one ``atna.purged`` event each time."""
    if _postgres():
        removed = 0
        for month in ids:
            table, refs = f"atna_message_{month:06d}", f"atna_message_ref_{month:06d}"
            start = datetime(month // 100, month % 100, 1, tzinfo=UTC)
            within = (AtnaMessage.received_at >= start, AtnaMessage.received_at < add_months(start, 1))
            batches = list(db.session.execute(
                select(AtnaMessage.batch_id).where(*within).distinct()).scalars())
            count = db.session.execute(
                select(func.count()).select_from(AtnaMessage).where(*within)).scalar_one()
            db.session.execute(text(f'DROP TABLE IF EXISTS "{refs}"'))
            db.session.execute(text(f'DROP TABLE "{table}"'))
            record("atna.purged", object_type="atna_message", object_id=f"{month // 100}-{month % 100:02d}",
                   details={"month": f"{month // 100}-{month % 100:02d}", "count": count,
                            "batches": _ranges(batches), "method": "partition dropped"})
            removed += count
        return removed
    batches = list(db.session.execute(select(AtnaMessage.batch_id).where(AtnaMessage.id.in_(ids)).distinct())
                   .scalars())
    db.session.execute(delete(AtnaMessageRef).where(AtnaMessageRef.message_id.in_(ids)))
    count = getattr(db.session.execute(delete(AtnaMessage).where(AtnaMessage.id.in_(ids))), "rowcount", 0)
    record("atna.purged", object_type="atna_message",
           details={"count": count, "first_id": min(ids), "last_id": max(ids), "batches": _ranges(batches),
                    "method": "rows deleted"})
    return int(count)


def matches(scope: HoldScope) -> bool:
    """Whether a hold on this class for a date range covers any stored message."""
    if scope.record_class != KEY or scope.object_type:
        return False
    query = select(AtnaMessage.id)
    if scope.start is not None:
        query = query.where(AtnaMessage.received_at >= scope.start)
    if scope.end is not None:
        query = query.where(AtnaMessage.received_at <= scope.end)
    return db.session.execute(query.limit(1)).first() is not None


RETENTION_CLASS = RecordClass(
    key=KEY, label="PACS access log (received audit messages; month partitions on PostgreSQL)",
    anchors=("received",), default_years=6, floor_years=6, floor_rule=DOCUMENTATION_RULE,
    candidates=_candidates, held=_held, purge=_purge)
