"""Navigation and dashboard registries that domains fill; pages show each role its own."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core.auth.permissions import Permission, has_permission


@dataclass(frozen=True)
class NavItem:
    """A link in the top navigation."""

    label: str
    endpoint: str
    permission: Permission
    order: int
    icon: str = ""


@dataclass(frozen=True)
class DashboardPanel:
    """A block on the home page: a template fed by a function, for one permission."""

    template: str
    permission: Permission
    order: int
    provider: Callable[[], dict[str, Any]]


NAV_ITEMS: list[NavItem] = []
DASHBOARD_PANELS: list[DashboardPanel] = []


def register_nav(item: NavItem) -> None:
    """Add a navigation link (once per endpoint)."""
    if all(existing.endpoint != item.endpoint for existing in NAV_ITEMS):
        NAV_ITEMS.append(item)
        NAV_ITEMS.sort(key=lambda i: i.order)


def register_dashboard_panel(panel: DashboardPanel) -> None:
    """Add a home-page panel (once per template)."""
    if all(existing.template != panel.template for existing in DASHBOARD_PANELS):
        DASHBOARD_PANELS.append(panel)
        DASHBOARD_PANELS.sort(key=lambda p: p.order)


def nav_for(user: Any) -> list[NavItem]:
    """The links ``user`` may follow."""
    return [item for item in NAV_ITEMS if has_permission(user, item.permission)]


def panels_for(user: Any) -> list[tuple[DashboardPanel, dict[str, Any]]]:
    """The dashboard panels ``user`` may see, with their data."""
    return [(p, p.provider()) for p in DASHBOARD_PANELS if has_permission(user, p.permission)]


@dataclass(frozen=True)
class Banner:
    """A strip shown on every page (overdue training, broken audit chain...)."""

    level: str
    html: Any


BannerSource = Callable[[Any], list[Banner]]
BANNER_SOURCES: list[BannerSource] = []


def register_banner_source(source: BannerSource) -> None:
    """Add a function that returns the banners for a user."""
    if source not in BANNER_SOURCES:
        BANNER_SOURCES.append(source)


def banners_for(user: Any) -> list[Banner]:
    """All banners for ``user`` (none when signed out)."""
    if not getattr(user, "is_authenticated", False):
        return []
    return [banner for source in BANNER_SOURCES for banner in source(user)]
