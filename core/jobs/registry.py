"""Job kinds and periodic jobs, registered by each package's ``init_app`` on the app."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from flask import Flask

from core.registry import app_registry, current_app_object


class JobContext(Protocol):
    """What a running job sees of itself."""

    job_id: int
    params: dict[str, Any]
    user_id: int | None
    attempt: int

    def progress(self, percent: int, stage: str) -> None:
        """Show how far the job got (call it with no write transaction open)."""

    def cancel_requested(self) -> bool:
        """Whether someone asked to cancel the job (check it at safe points)."""


Handler = Callable[[JobContext], "dict[str, Any] | None"]


@dataclass(frozen=True)
class JobKind:
    """A kind of job: its handler, retries, and how many may run at once in one worker.

    The handler runs in an app context and commits for itself; it returns a small summary
    (shown on the Jobs page) or None. ``concurrency`` bounds running jobs of this kind per
    worker (report layout is CPU-bound); ``every`` makes it periodic (seconds, from the app).
    """

    name: str
    title: str
    handler: Handler
    max_attempts: int = 3
    retry_delay: float = 30.0
    priority: int = 100
    concurrency: int | None = None
    every: Callable[[Flask], float] | None = None


@dataclass
class JobRegistry:
    """An app's job kinds by name."""

    kinds: dict[str, JobKind] = field(default_factory=dict)


def _registry(app: Flask | None = None) -> JobRegistry:
    """The job registry of ``app`` (default: the current app)."""
    return app_registry(app or current_app_object(), "jobs", JobRegistry)


def register_job(app: Flask, kind: JobKind) -> None:
    """Make a job kind runnable (and, with ``every``, queued periodically)."""
    _registry(app).kinds[kind.name] = kind


def job_kinds(app: Flask | None = None) -> dict[str, JobKind]:
    """The registered job kinds by name."""
    return _registry(app).kinds


def periodic_kinds(app: Flask | None = None) -> list[JobKind]:
    """The kinds queued on a schedule."""
    return [kind for kind in job_kinds(app).values() if kind.every is not None]
