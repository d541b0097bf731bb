"""`pacsdesk demo`: registry of domain seeders that fill an empty database."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Flask

from core.auth.models import User
from core.registry import app_registry, current_registry

Seeder = Callable[["DemoContext"], None]
DataCheck = Callable[[], int]


@dataclass
class DemoContext:
    """What seeders share: a seeded random generator and the demo users by username."""

    rng: random.Random
    users: dict[str, User]
    notes: list[str] = field(default_factory=list)

    def users_with_role(self, role: str) -> list[User]:
        """Demo users holding ``role``."""
        return [u for u in self.users.values() if u.role == role]


@dataclass
class DemoRegistry:
    """An app's demo seeders (run in order) and checks for real data."""

    seeders: list[tuple[int, str, Seeder]] = field(default_factory=list)
    data_checks: list[tuple[str, DataCheck]] = field(default_factory=list)


def _demo(app: Flask | None = None) -> DemoRegistry:
    """The app's (or the current app's) demo registry."""
    return app_registry(app, "demo", DemoRegistry) if app else current_registry("demo", DemoRegistry)


def register_seeder(app: Flask, order: int, name: str, seeder: Seeder) -> None:
    """Add a package's seeder; lower ``order`` runs first."""
    registry = _demo(app)
    if all(existing != name for _, existing, _ in registry.seeders):
        registry.seeders.append((order, name, seeder))
        registry.seeders.sort(key=lambda s: s[0])


def register_data_check(app: Flask, name: str, check: DataCheck) -> None:
    """Add a function that counts a package's real records (demo refuses when any exist)."""
    registry = _demo(app)
    if all(existing != name for existing, _ in registry.data_checks):
        registry.data_checks.append((name, check))


def seeders() -> list[tuple[int, str, Seeder]]:
    """The current app's seeders in order."""
    return list(_demo().seeders)


def existing_data() -> dict[str, Any]:
    """Per package, how many records exist (only non-zero counts)."""
    return {name: n for name, check in _demo().data_checks if (n := check())}
