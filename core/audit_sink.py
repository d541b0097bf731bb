"""The one door through which core code writes audit events.

``core`` may not import ``audit`` (dependencies point one way), yet logins and account
changes must be audited in the same transaction. The audit package installs its writer
here when the app is created; writing before that is an error, never a silent skip.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_writer: Callable[..., Any] | None = None


def install(writer: Callable[..., Any]) -> None:
    """Install the audit writer (called once by the audit package)."""
    global _writer
    _writer = writer


def record(action: str, **kwargs: Any) -> Any:
    """Write an audit event through the installed writer."""
    if _writer is None:
        raise RuntimeError("no audit writer installed: the audit package was not initialised")
    return _writer(action, **kwargs)
