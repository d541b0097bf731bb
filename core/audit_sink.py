"""The one door through which every package writes audit events, and their vocabulary.

``core`` may not import ``audit`` (dependencies point one way), yet logins and account
changes must be audited in the same transaction. The audit package installs its writer on
the app in its ``init_app``; writing before that is an error, never a silent skip. Each
package declares the action names it records beside the service that records them and
registers them here from its ``init_app``; the writer refuses any other name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from flask import Flask

from core.registry import app_registry, current_app_object

Writer = Callable[..., Any]

class _Sink:
    """An app's audit writer and the action names it accepts."""

    def __init__(self) -> None:
        self.writer: Writer | None = None
        self.actions: dict[str, str] = {}


def _sink(app: Flask | None = None) -> _Sink:
    """The sink of ``app`` (default: the current app)."""
    return app_registry(app or current_app_object(), "audit_sink", _Sink)


def install(app: Flask, writer: Writer) -> None:
    """Install the audit writer of ``app`` (called by the audit package's ``init_app``)."""
    _sink(app).writer = writer


def register_actions(app: Flask, actions: Mapping[str, str]) -> None:
    """Add action names (name -> description) to the app's controlled vocabulary."""
    _sink(app).actions.update(actions)


def actions(app: Flask | None = None) -> dict[str, str]:
    """The action names the app accepts, with their descriptions."""
    return dict(_sink(app).actions)


def is_action(name: str) -> bool:
    """Whether the current app accepts ``name`` as an audit action."""
    return name in _sink().actions


def record(action: str, **kwargs: Any) -> Any:
    """Write an audit event through the current app's writer."""
    writer = _sink().writer
    if writer is None:
        raise RuntimeError("no audit writer installed: the audit package was not initialised")
    return writer(action, **kwargs)
