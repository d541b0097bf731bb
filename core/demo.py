"""`pacsdesk demo`: registry of domain seeders that fill an empty database."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from core.auth.models import User

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


_seeders: list[tuple[int, str, Seeder]] = []
_data_checks: list[tuple[str, DataCheck]] = []


def register_seeder(order: int, name: str, seeder: Seeder) -> None:
    """Add a domain's seeder; lower ``order`` runs first."""
    if all(existing != name for _, existing, _ in _seeders):
        _seeders.append((order, name, seeder))
        _seeders.sort(key=lambda s: s[0])


def register_data_check(name: str, check: DataCheck) -> None:
    """Add a function that counts a domain's real records (demo refuses when any exist)."""
    if all(existing != name for existing, _ in _data_checks):
        _data_checks.append((name, check))


def seeders() -> list[tuple[int, str, Seeder]]:
    """The registered seeders in order."""
    return list(_seeders)


def existing_data() -> dict[str, Any]:
    """Per domain, how many records exist (only non-zero counts)."""
    return {name: n for name, check in _data_checks if (n := check())}
