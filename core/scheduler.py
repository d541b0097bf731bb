"""Periodic jobs: a registry that domains fill (the runner and its database lease follow)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from flask import Flask


@dataclass(frozen=True)
class Job:
    """A periodic job: ``func()`` runs in an app context and commits for itself."""

    name: str
    interval: Callable[[Flask], float]
    func: Callable[[], object]


JOBS: dict[str, Job] = {}


def register_job(name: str, interval: Callable[[Flask], float], func: Callable[[], object]) -> None:
    """Register a periodic job; ``interval(app)`` gives its period in seconds."""
    JOBS[name] = Job(name, interval, func)
