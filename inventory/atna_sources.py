"""The inventory's side of the PACS access log: which asset a sender is, and a ticket when one falls silent.

The audit package may not import the inventory; it asks through ``audit.atna.sources``. This
module answers (``InventorySources``) and opens one "PACS audit source silent" ticket per asset
while it is silent (``SilenceTickets``), resolved with a reply when messages come back, as node
outages are handled in ``inventory.verification.tickets``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import func, or_, select

from audit.atna.sources import SilentSource, SourceAsset
from core.extensions import db
from core.timeutil import format_local
from helpdesk.models import Category
from helpdesk.services import (
    add_system_reply,
    find_open_system_ticket,
    open_system_ticket,
    resolve_system_ticket,
)
from inventory.models import Asset, AssetStatus

CATEGORY = ("audit_source_silent", "PACS audit source silent",
            "A PACS, viewer or modality stopped sending its audit messages (opened automatically).")
GONE = (AssetStatus.RETIRED, AssetStatus.DISPOSED)
STAMP = "%Y-%m-%d %H:%M:%S %Z"


def _source_asset(asset: Asset) -> SourceAsset:
    """What the access log shows of an asset."""
    return SourceAsset(asset.id, asset.asset_tag, asset.name, asset.status == AssetStatus.IN_SERVICE)


class InventorySources:
    """``audit.atna.sources.SourceDirectory`` over the inventory's assets."""

    def find(self, address: str, host_name: str | None, audit_source_id: str | None) -> SourceAsset | None:
        """The asset by audit source id (AE title, tag or host name), then host name, then IP address."""
        live = Asset.status.not_in(GONE)
        tries = []
        if audit_source_id and audit_source_id.strip():
            key = audit_source_id.strip().lower()
            tries.append(or_(func.lower(Asset.ae_title) == key, func.lower(Asset.asset_tag) == key,
                             func.lower(Asset.hostname) == key))
        if host_name and host_name.strip() and host_name != "-":
            name = host_name.strip().lower()
            tries.append(or_(func.lower(Asset.hostname) == name,
                             func.lower(Asset.hostname).like(name.split(".")[0] + ".%")))
        if address:
            tries.append(or_(Asset.ip_address == address, Asset.hostname == address))
        for condition in tries:
            asset = db.session.execute(select(Asset).where(live, condition).order_by(Asset.id).limit(1)
                                       ).scalar_one_or_none()
            if asset is not None:
                return _source_asset(asset)
        return None

    def by_ids(self, ids: Iterable[int]) -> dict[int, SourceAsset]:
        """The assets with these ids."""
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        return {a.id: _source_asset(a) for a in db.session.execute(select(Asset).where(Asset.id.in_(wanted))
                                                                    ).scalars()}

    def page_endpoint(self) -> str:
        """The asset page's endpoint."""
        return "inventory.asset_detail"


def _minutes(delta: timedelta) -> str:
    """A silence in words: '95 minutes'."""
    minutes = max(int(delta.total_seconds() // 60), 0)
    return f"{minutes} minute{'' if minutes == 1 else 's'}"


def ticket_key(asset_id: int) -> str:
    """De-duplication key of an asset's silent-source ticket."""
    return f"atna-silent:{asset_id}"


class SilenceTickets:
    """``audit.atna.sources.SilenceHandler``: one help desk ticket per silent asset."""

    def source_silent(self, source: SilentSource) -> None:
        """Open the asset's ticket (never a second while one is open)."""
        asset = source.asset
        if asset is None:
            return
        minutes = current_app.config["PACSDESK_ATNA_SILENT_MINUTES"]
        description = (
            f"PACS Desk has received no audit message from {asset.name} ({asset.tag}) for more than "
            f"{minutes} minutes while it is in service.\n\n"
            f"Sender: {source.label} ({source.sender_host})\n"
            f"Last message: {format_local(source.last_seen, STAMP)}\n\n"
            "Check the system's audit (ATNA) settings, its syslog destination and the network path: "
            "while it is silent, nobody can tell who looks at its images.")
        open_system_ticket(ticket_key(asset.id), f"PACS audit source silent: {asset.name} ({asset.tag})",
                           description, category_code=CATEGORY[0], priority="P3", asset_id=asset.id)

    def source_back(self, source: SilentSource, back_at: datetime) -> None:
        """Reply on the asset's ticket and resolve it when configured to."""
        if source.asset is None:
            return
        ticket = find_open_system_ticket(ticket_key(source.asset.id))
        if ticket is None:
            return
        body = (f"{source.asset.name} ({source.asset.tag}) sends audit messages again since "
                f"{format_local(back_at, STAMP)}, after {_minutes(back_at - source.last_seen)} of silence.")
        if current_app.config["PACSDESK_AUTO_RESOLVE"]:
            resolve_system_ticket(ticket, body)
        else:
            add_system_reply(ticket, body)


def ensure_category() -> None:
    """The ticket category of silent sources (reference data; never overwrites an admin's edits)."""
    if db.session.execute(select(Category.id).where(Category.code == CATEGORY[0])).first() is None:
        db.session.add(Category(code=CATEGORY[0], label=CATEGORY[1], description=CATEGORY[2], sort_order=95))
        db.session.flush()
