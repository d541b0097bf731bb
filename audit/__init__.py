"""The audit trail, retention, training and compliance reports."""

from __future__ import annotations

from audit.trail import guards  # noqa: F401 - installs the append-only triggers on create_all
from audit.trail.chain import record, register_actions
from core import audit_sink

audit_sink.install(record)

__all__ = ["record", "register_actions"]
