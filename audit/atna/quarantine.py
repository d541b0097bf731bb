"""Quarantined messages: counted by reason, looked at (audited), purged when no longer needed (audited)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import delete, func, select

from audit.atna.models import AtnaQuarantine
from audit.trail.chain import record
from core.extensions import db
from core.timeutil import utcnow

PREVIEW_BYTES = 8192

# Audit actions recorded here (registered by the package's init_app).
AUDIT_ACTIONS = {
    "atna.quarantine_view": "Quarantined PACS audit message viewed",
    "atna.quarantine_purged": "Quarantined PACS audit messages purged",
}


def quarantine_counts() -> dict[str, int]:
    """How many messages are quarantined, by reason."""
    return dict(db.session.execute(select(AtnaQuarantine.reason, func.count())
                                   .group_by(AtnaQuarantine.reason)).all())


def recent_quarantine(limit: int = 100) -> list[Any]:
    """The latest quarantined messages, without their bytes."""
    q = AtnaQuarantine
    return list(db.session.execute(
        select(q.id, q.received_at, q.listener, q.sender_host, q.sender_port, q.reason, q.detail, q.size)
        .order_by(q.id.desc()).limit(limit)))


def view_quarantined(entry_id: int) -> tuple[AtnaQuarantine, str] | None:
    """One quarantined message and a printable preview of its bytes; audited (flushes)."""
    entry = db.session.get(AtnaQuarantine, entry_id)
    if entry is None:
        return None
    record("atna.quarantine_view", object_type="atna_quarantine", object_id=entry_id,
           details={"reason": entry.reason, "size": entry.size})
    preview = entry.raw[:PREVIEW_BYTES].decode("utf-8", errors="replace")
    return entry, preview


def purge_quarantine(older_than_days: int, user: Any = None) -> int:
    """Delete quarantined messages received more than ``older_than_days`` ago (flushes; audited)."""
    if older_than_days < 1:
        raise ValueError("older_than_days must be at least 1")
    cutoff = utcnow() - timedelta(days=older_than_days)
    counts = dict(db.session.execute(select(AtnaQuarantine.reason, func.count())
                                     .where(AtnaQuarantine.received_at < cutoff)
                                     .group_by(AtnaQuarantine.reason)).all())
    result = db.session.execute(delete(AtnaQuarantine).where(AtnaQuarantine.received_at < cutoff))
    removed = getattr(result, "rowcount", 0)
    record("atna.quarantine_purged", object_type="atna_quarantine",
           details={"older_than_days": older_than_days, "count": removed, "by_reason": counts},
           **({} if user is None else {"user": user}))
    return int(removed)
