"""Periodic work of the PACS access log: silent sources, orphaned batches, next months' partitions."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Flask, current_app
from sqlalchemy import select, update

from audit.atna.models import MONTHS_AHEAD, AtnaBatch, AtnaSource, ensure_partitions
from audit.atna.sources import SilentSource, silence_handlers, source_directory
from audit.atna.store import iso_utc, seal_batch
from audit.atna.verify import batch_digest
from audit.trail.chain import record
from core.extensions import db
from core.jobs.registry import JobContext
from core.timeutil import utcnow

SOURCES_JOB = "atna.sources"
MAINTENANCE_JOB = "atna.maintenance"
ORPHAN_AFTER = timedelta(minutes=5)   # a live receiver seals every minute; 5 quiet minutes: it died

# Audit actions recorded here (registered by the package's init_app).
AUDIT_ACTIONS = {
    "atna.source_silent": "PACS audit source went silent",
    "atna.source_back": "PACS audit source sends again",
}


def sources_interval(app: Flask) -> float:
    """Check for silent sources every five minutes, or more often for a short silence setting."""
    return float(min(300, app.config["PACSDESK_ATNA_SILENT_MINUTES"] * 60 // 4 or 60))


def check_silent_sources() -> list[SilentSource]:
    """Mark in-service assets whose sources sent nothing for the silence period; tell handlers (flushes)."""
    directory = source_directory()
    if directory is None:
        return []
    now = utcnow()
    cutoff = now - timedelta(minutes=current_app.config["PACSDESK_ATNA_SILENT_MINUTES"])
    by_asset: dict[int, list[AtnaSource]] = {}
    for source in db.session.execute(select(AtnaSource).where(AtnaSource.asset_id.is_not(None))).scalars():
        if source.asset_id is not None:  # always: the query asks for matched sources only
            by_asset.setdefault(source.asset_id, []).append(source)
    assets = directory.by_ids(by_asset)
    found = []
    for asset_id, sources in sorted(by_asset.items()):
        asset = assets.get(asset_id)
        last = max(sources, key=lambda s: s.last_seen)
        if asset is None or not asset.in_service or last.last_seen >= cutoff \
                or any(s.silent_since is not None for s in sources):
            continue
        db.session.execute(update(AtnaSource).where(AtnaSource.asset_id == asset_id).values(silent_since=now))
        silent = SilentSource(last.id, last.label, last.sender_host, asset, last.last_seen, now)
        record("atna.source_silent", object_type="asset", object_id=asset.tag, user=None, client_address=None,
               details={"source": last.label, "sender_host": last.sender_host,
                        "last_seen": iso_utc(last.last_seen),
                        "silent_minutes": current_app.config["PACSDESK_ATNA_SILENT_MINUTES"]})
        for handler in silence_handlers():
            handler.source_silent(silent)
        found.append(silent)
    db.session.flush()
    return found


def sources_job(ctx: JobContext) -> dict[str, Any]:
    """The periodic silent-source check (commits)."""
    found = check_silent_sources()
    db.session.commit()
    return {"silent": [s.label for s in found]}


def seal_orphans() -> list[int]:
    """Seal batches left open by a receiver that died, from what was stored (flushes)."""
    sealed = []
    stale = utcnow() - ORPHAN_AFTER
    for batch in db.session.execute(select(AtnaBatch).where(AtnaBatch.sealed_at.is_(None),
                                                            AtnaBatch.updated_at < stale)).scalars():
        count, digest = batch_digest(db.session.connection(), batch.id)
        seal_batch(batch.id, batch.receiver, count=count, quarantined=batch.quarantined,
                   first=batch.first_received, last=batch.last_received, digest=digest, sources={},
                   recovered=True)
        sealed.append(batch.id)
    db.session.flush()
    return sealed


def maintenance_job(ctx: JobContext) -> dict[str, Any]:
    """Seal orphaned batches and create the coming months' partitions (commits)."""
    sealed = seal_orphans()
    made = ensure_partitions(db.session.connection(), utcnow().date(), MONTHS_AHEAD + 1)
    db.session.commit()
    return {"sealed_orphans": sealed, "partitions_created": made}
