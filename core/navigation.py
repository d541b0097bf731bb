"""Navigation, dashboard panels and page banners that packages register; pages show each role its own."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Flask

from core.auth.permissions import Permission, has_permission
from core.registry import app_registry, current_registry


@dataclass(frozen=True)
class NavItem:
    """A link in the top navigation."""

    label: str
    endpoint: str
    permission: Permission
    order: int
    icon: str = ""
    group: str = ""  # items of one group share a menu in the bar (when a user has two or more)


# The menus that gather items, with their icons, so every role's bar fits 1280 px.
GROUPS = {"Compliance": "shield-check", "Administration": "sliders"}


@dataclass(frozen=True)
class NavEntry:
    """What the bar shows: one link, or a menu of links (``items``) under ``label``."""

    label: str
    icon: str
    items: tuple[NavItem, ...]

    @property
    def is_menu(self) -> bool:
        """Whether this entry opens a menu."""
        return len(self.items) > 1


@dataclass(frozen=True)
class DashboardPanel:
    """A block on the home page: a template fed by a function, for one permission."""

    template: str
    permission: Permission
    order: int
    provider: Callable[[], dict[str, Any]]


@dataclass(frozen=True)
class Banner:
    """A strip shown on every page (overdue training, broken audit chain...)."""

    level: str
    html: Any


BannerSource = Callable[[Any], list[Banner]]


@dataclass
class Navigation:
    """An app's navigation links, home-page panels and banner sources."""

    items: list[NavItem] = field(default_factory=list)
    panels: list[DashboardPanel] = field(default_factory=list)
    banner_sources: list[BannerSource] = field(default_factory=list)


def _navigation(app: Flask | None = None) -> Navigation:
    """The app's (or the current app's) navigation registry."""
    return app_registry(app, "navigation", Navigation) if app else current_registry("navigation", Navigation)


def register_nav(app: Flask, item: NavItem) -> None:
    """Add a navigation link (once per endpoint)."""
    items = _navigation(app).items
    if all(existing.endpoint != item.endpoint for existing in items):
        items.append(item)
        items.sort(key=lambda i: i.order)


def register_dashboard_panel(app: Flask, panel: DashboardPanel) -> None:
    """Add a home-page panel (once per template)."""
    panels = _navigation(app).panels
    if all(existing.template != panel.template for existing in panels):
        panels.append(panel)
        panels.sort(key=lambda p: p.order)


def register_banner_source(app: Flask, source: BannerSource) -> None:
    """Add a function that returns the banners for a user."""
    sources = _navigation(app).banner_sources
    if source not in sources:
        sources.append(source)


def nav_for(user: Any) -> list[NavItem]:
    """The links ``user`` may follow."""
    return [item for item in _navigation().items if has_permission(user, item.permission)]


def nav_entries(user: Any) -> list[NavEntry]:
    """The bar of ``user``: ungrouped links in order, each group as one menu where its first item stands."""
    items = nav_for(user)
    entries: list[NavEntry] = []
    seen: set[str] = set()
    for item in items:
        if not item.group:
            entries.append(NavEntry(item.label, item.icon, (item,)))
        elif item.group not in seen:
            seen.add(item.group)
            members = tuple(i for i in items if i.group == item.group)
            entries.append(NavEntry(item.group, GROUPS.get(item.group, ""), members))
    return entries


def panels_for(user: Any) -> list[tuple[DashboardPanel, dict[str, Any]]]:
    """The dashboard panels ``user`` may see, with their data."""
    return [(p, p.provider()) for p in _navigation().panels if has_permission(user, p.permission)]


def banners_for(user: Any) -> list[Banner]:
    """All banners for ``user`` (none when signed out)."""
    if not getattr(user, "is_authenticated", False):
        return []
    return [banner for source in _navigation().banner_sources for banner in source(user)]
