"""The nightly training assignment sync."""

from __future__ import annotations

from typing import Any

from audit.training.services import ensure_assignments
from core.extensions import db
from core.jobs.registry import JobContext


def training_sync_job(ctx: JobContext) -> dict[str, Any]:
    """Create missing training assignments (commits)."""
    created = ensure_assignments()
    db.session.commit()
    return {"assignments_created": created}
