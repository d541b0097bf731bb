"""Per-app registries: what a package registers in its ``init_app`` lives on the app.

Importing a module fills nothing; two apps (tests build many) never share what they
registered, and the order of imports changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar, cast

from flask import Flask, current_app

T = TypeVar("T")


def app_registry(app: Flask, key: str, factory: Callable[[], T]) -> T:
    """The app's registry called ``key``, created empty by ``factory`` on first use."""
    registries: dict[str, object] = app.extensions.setdefault("pacsdesk", {})
    if key not in registries:
        registries[key] = factory()
    return cast(T, registries[key])  # each key holds what its factory made


def current_app_object() -> Flask:
    """The app handling the current request or command itself, not the ``current_app`` proxy."""
    return current_app._get_current_object()  # type: ignore[attr-defined]  # Flask types the proxy as Flask


def current_registry(key: str, factory: Callable[[], T]) -> T:
    """The registry called ``key`` of the app handling the current request or command."""
    return app_registry(current_app_object(), key, factory)
