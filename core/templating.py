"""Template globals and filters shared by every page."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask, request
from flask_login import current_user

from core.assets import STATIC_ENDPOINTS
from core.auth.forms import ConfirmForm
from core.auth.permissions import can
from core.navigation import banners_for, nav_entries
from core.registry import app_registry, current_app_object
from core.timeutil import format_local, to_local

ContextProvider = Callable[[], dict[str, Any]]


def _providers(app: Flask) -> list[ContextProvider]:
    """The functions that add to every page's context in ``app``."""
    return app_registry(app, "template_context", list)


def register_context_provider(app: Flask, provider: ContextProvider) -> None:
    """Let a package add values to every page's template context."""
    if provider not in _providers(app):
        _providers(app).append(provider)


def _logout_form() -> ConfirmForm:
    """The navigation's logout form; it never reads the request (a 413 page must still render)."""
    return ConfirmForm(formdata=None)


def _context() -> dict[str, Any]:
    """Values every template can use."""
    values: dict[str, Any] = {"can": can, "logout_form": _logout_form, "nav_entries": nav_entries,
                              "page_banners": []}
    if request.endpoint not in STATIC_ENDPOINTS:
        values["page_banners"] = banners_for(current_user)
    for provider in _providers(current_app_object()):
        values.update(provider())
    return values


def _no_none(value: Any) -> Any:
    """What ``{{ ... }}`` prints: nothing for None (never the word "None" on a page or in a PDF)."""
    return "" if value is None else value


def init_app(app: Flask) -> None:
    """Install globals and filters."""
    app.context_processor(_context)
    app.jinja_env.finalize = _no_none
    app.jinja_env.filters["localtime"] = format_local
    app.jinja_env.filters["tolocal"] = to_local
    app.jinja_env.globals["organization"] = app.config["PACSDESK_ORGANIZATION"]
