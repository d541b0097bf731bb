"""How the help desk sees assets without importing the inventory: a lookup the inventory registers.

Tickets keep an ``asset_id`` (a foreign key to the asset table). Everything else the help desk
needs of an asset (find it by tag, show its tag and name, link to its page, filter tickets by
it) goes through the ``AssetLookup`` that the inventory installs in its ``init_app``. Without an
inventory, tickets simply have no asset.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from flask import Flask
from sqlalchemy import Select

from core.registry import app_registry, current_registry


@dataclass(frozen=True)
class AssetRef:
    """What a ticket shows of its asset."""

    id: int
    tag: str
    name: str
    kind: str = ""
    location: str = ""


class AssetLookup(Protocol):
    """The inventory's answers to the help desk's questions about assets."""

    def by_tag(self, tag: str, for_user: Any = None) -> AssetRef | None:
        """The asset with ``tag`` (any case), or None; with ``for_user``, only one that person may name."""

    def search(self, text: str, for_user: Any = None, limit: int = 10) -> list[AssetRef]:
        """Assets whose tag or name (and, for staff, AE title or host) contain ``text``.

        With ``for_user`` (a person who may not read the inventory), only the assets that
        person may name on a ticket, matched on tag and name only.
        """

    def by_ids(self, ids: Iterable[int]) -> dict[int, AssetRef]:
        """The assets with these ids."""

    def ids_with_tag(self, tag: str) -> Select:
        """A select of the ids of assets tagged ``tag`` (any case), for SQL filters."""

    def page_endpoint(self) -> str:
        """The endpoint of an asset's page, called with ``tag=``."""


class _Slot:
    """The app's asset lookup, if an inventory installed one."""

    lookup: AssetLookup | None = None


def register_asset_lookup(app: Flask, lookup: AssetLookup) -> None:
    """Let the help desk find and show assets (called by the inventory's ``init_app``)."""
    app_registry(app, "helpdesk_assets", _Slot).lookup = lookup


def asset_lookup() -> AssetLookup | None:
    """The current app's asset lookup, or None when there is no inventory."""
    return current_registry("helpdesk_assets", _Slot).lookup


def asset_ref(asset_id: int | None) -> AssetRef | None:
    """The asset with ``asset_id``, or None."""
    lookup = asset_lookup()
    if asset_id is None or lookup is None:
        return None
    return lookup.by_ids([asset_id]).get(asset_id)
