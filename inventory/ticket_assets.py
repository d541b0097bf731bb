"""The asset lookup the inventory gives the help desk: tickets name assets by tag, in any case."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import ColumnElement, Select, func, or_, select

from core.database import LIKE_ESCAPE, contains_pattern
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


def _nameable_by(user: Any) -> ColumnElement[bool]:
    """Assets a person without inventory access may name: assigned to them or in their department."""
    department = (getattr(user, "department", "") or "").strip().lower()
    own = Asset.assigned_user_id == user.id
    return or_(own, func.lower(Asset.department) == department) if department else own


class InventoryAssets:
    """``helpdesk.assets.AssetLookup`` over the inventory's assets."""

    def by_tag(self, tag: str, for_user: Any = None) -> AssetRef | None:
        """The asset with ``tag`` (exact first, then ignoring case); with ``for_user``, one they may name."""
        asset = find_asset(tag)
        if asset is not None and for_user is not None and not db.session.execute(
                select(Asset.id).where(Asset.id == asset.id, _nameable_by(for_user))).first():
            return None
        return _ref(asset) if asset is not None else None

    def search(self, text: str, for_user: Any = None, limit: int = 10) -> list[AssetRef]:
        """Assets matching ``text`` in tag or name (for staff also AE title, host name, IP address)."""
        text = text.strip()[:60]
        if not text:
            return []
        pattern = contains_pattern(text.lower())
        columns: list[Any] = [Asset.asset_tag, Asset.name]
        if for_user is None:
            columns += [Asset.ae_title, Asset.hostname, Asset.ip_address]
        query = select(Asset).where(or_(*(func.lower(c).like(pattern, escape=LIKE_ESCAPE) for c in columns)))
        query = query.where(_nameable_by(for_user)) if for_user is not None else query
        exact = func.lower(Asset.asset_tag) == text.lower()
        rows = db.session.execute(query.order_by(exact.desc(), Asset.asset_tag).limit(limit)).scalars()
        return [_ref(a) for a in rows]

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
