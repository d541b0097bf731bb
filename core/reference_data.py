"""Reference data every database needs (categories, SLAs, courses, default policies).

Domains register idempotent functions; `pacsdesk setup` runs them after the schema
upgrade, and the test fixtures run them on every fresh test database.
"""

from __future__ import annotations

from collections.abc import Callable

_loaders: list[tuple[str, Callable[[], None]]] = []


def register_reference_data(name: str, loader: Callable[[], None]) -> None:
    """Register an idempotent loader (it only flushes; the caller commits)."""
    if all(existing != name for existing, _ in _loaders):
        _loaders.append((name, loader))


def load_reference_data() -> list[str]:
    """Run every loader; returns their names."""
    for _, loader in _loaders:
        loader()
    return [name for name, _ in _loaders]
