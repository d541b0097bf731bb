"""What the pages show of the senders and receivers: last message per asset, silence, losses."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from audit.atna.models import AtnaReceiverState, AtnaSource
from audit.atna.search import event_label
from audit.atna.sources import SourceAsset, source_directory
from core.extensions import db


@dataclass(frozen=True)
class AssetAuditSummary:
    """An asset's last audit message, as the inventory's asset page shows it (no patient data)."""

    last_seen: datetime
    last_event: str
    last_event_time: datetime | None
    messages: int
    quarantined: int
    silent_since: datetime | None
    senders: int


def asset_audit_summary(asset_id: int) -> AssetAuditSummary | None:
    """The last audit message received from an asset, or None when it never sent one."""
    sources = list(db.session.execute(select(AtnaSource).where(AtnaSource.asset_id == asset_id)).scalars())
    if not sources:
        return None
    last = max(sources, key=lambda s: s.last_seen)
    return AssetAuditSummary(
        last.last_seen, event_label(last.last_event_id), last.last_event_time,
        sum(s.message_count for s in sources), sum(s.quarantined_count for s in sources),
        min((s.silent_since for s in sources if s.silent_since), default=None), len(sources))


def sources_with_assets() -> list[tuple[AtnaSource, SourceAsset | None]]:
    """Every sender with its matched asset, unknown senders first, then by last message."""
    sources = list(db.session.execute(select(AtnaSource).order_by(AtnaSource.last_seen.desc())).scalars())
    directory = source_directory()
    assets = directory.by_ids({s.asset_id for s in sources if s.asset_id}) if directory else {}
    pairs = [(s, assets.get(s.asset_id) if s.asset_id else None) for s in sources]
    return sorted(pairs, key=lambda pair: pair[1] is not None)


def receivers() -> list[AtnaReceiverState]:
    """Receiver processes, the running ones first."""
    return list(db.session.execute(select(AtnaReceiverState).order_by(
        AtnaReceiverState.stopped_at.is_not(None), AtnaReceiverState.updated_at.desc())).scalars())


def losses() -> dict[str, Any]:
    """What all receivers lost so far (dropped UDP datagrams and the like) and refused as too large."""
    row = db.session.execute(select(func.coalesce(func.sum(AtnaReceiverState.dropped_udp), 0),
                                    func.coalesce(func.sum(AtnaReceiverState.lost), 0),
                                    func.coalesce(func.sum(AtnaReceiverState.oversized), 0))).one()
    return {"dropped_udp": int(row[0]), "lost": int(row[1]), "oversized": int(row[2])}
