"""The asset lookup the inventory gives the help desk: tickets name assets by tag, in any case."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Select, func, select

from core.extensions import db
from helpdesk.assets import AssetRef
from inventory.forms import KIND_LABELS
from inventory.models import Asset
from inventory.services import find_asset


def _ref(asset: Asset) -> AssetRef:
    """What the help desk shows of ``asset``."""
    return AssetRef(id=asset.id, tag=asset.asset_tag, name=asset.name,
                    kind=KIND_LABELS.get(asset.kind, asset.kind),
                    location=asset.location)


class InventoryAssets:
    """``helpdesk.assets.AssetLookup`` over the inventory's assets."""

    def by_tag(self, tag: str) -> AssetRef | None:
        """The asset with ``tag`` (exact first, then ignoring case)."""
        asset = find_asset(tag)
        return _ref(asset) if asset is not None else None

    def by_ids(self, ids: Iterable[int]) -> dict[int, AssetRef]:
        """The assets with these ids."""
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        assets = db.session.execute(select(Asset).where(Asset.id.in_(wanted))).scalars()
        return {a.id: _ref(a) for a in assets}

    def ids_with_tag(self, tag: str) -> Select:
        """A select of the ids of assets tagged ``tag``, ignoring case."""
        return select(Asset.id).where(func.lower(Asset.asset_tag) == tag.strip().lower())

    def page_endpoint(self) -> str:
        """The asset page's endpoint."""
        return "inventory.asset_detail"
