"""Template globals and filters shared by every page."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask, request
from flask_login import current_user

from core.auth.forms import ConfirmForm
from core.auth.permissions import can
from core.navigation import banners_for, nav_for
from core.timeutil import format_local, to_local

# Functions that add to every page's context (e.g. the overdue-training banner).
_context_providers: list[Callable[[], dict[str, Any]]] = []


def register_context_provider(provider: Callable[[], dict[str, Any]]) -> None:
    """Let a domain add values to every page's template context."""
    _context_providers.append(provider)


def _logout_form() -> ConfirmForm:
    """The navigation's logout form; it never reads the request (a 413 page must still render)."""
    return ConfirmForm(formdata=None)


def _context() -> dict[str, Any]:
    """Values every template can use."""
    values: dict[str, Any] = {"can": can, "logout_form": _logout_form, "nav_items": nav_for,
                              "page_banners": []}
    if request.endpoint not in {"static", "bootstrap.static"}:
        values["page_banners"] = banners_for(current_user)
    for provider in _context_providers:
        values.update(provider())
    return values


def init_app(app: Flask) -> None:
    """Install globals and filters."""
    app.context_processor(_context)
    app.jinja_env.filters["localtime"] = format_local
    app.jinja_env.filters["tolocal"] = to_local
    app.jinja_env.globals["organization"] = app.config["PACSDESK_ORGANIZATION"]
