"""Reference data every database needs (categories, SLAs, courses, default policies).

Packages register idempotent loaders in their ``init_app``; `pacsdesk setup` runs them after
the schema upgrade, and the test fixtures run them on every fresh test database.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask

from core.registry import app_registry, current_app_object

Loader = Callable[[], None]


def _loaders(app: Flask) -> list[tuple[str, Loader]]:
    """The app's reference data loaders, in registration order."""
    return app_registry(app, "reference_data", list)


def register_reference_data(app: Flask, name: str, loader: Loader) -> None:
    """Register an idempotent loader (it only flushes; the caller commits)."""
    loaders = _loaders(app)
    if all(existing != name for existing, _ in loaders):
        loaders.append((name, loader))


def load_reference_data() -> list[str]:
    """Run every loader of the current app; returns their names."""
    loaders = _loaders(current_app_object())
    for _, loader in loaders:
        loader()
    return [name for name, _ in loaders]
