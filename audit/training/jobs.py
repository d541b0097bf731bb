"""The nightly training assignment sync, and large imports of past completions."""

from __future__ import annotations

import base64
from typing import Any

from audit.training.bulk import CompletionImportError, import_completions
from audit.training.services import ensure_assignments
from core.auth.models import User
from core.auth.permissions import Permission, has_permission
from core.database import commit_keeping_loaded
from core.extensions import db
from core.jobs.registry import JobContext
from core.jobs.worker import Fail

IMPORT_JOB = "audit.training_import"
MAX_PROBLEMS_SHOWN = 500      # a refused job keeps this many problems for its page


def training_sync_job(ctx: JobContext) -> dict[str, Any]:
    """Create missing training assignments (commits)."""
    created = ensure_assignments()
    db.session.commit()
    return {"assignments_created": created}


def completion_import_job(ctx: JobContext) -> dict[str, Any]:
    """Import a large completions file: every row checked first, then recorded in parts (commits)."""
    actor = db.session.get(User, ctx.user_id) if ctx.user_id is not None else None
    if actor is None or not has_permission(actor, Permission.TRAINING_MANAGE):
        raise Fail("The account that asked for the import was disabled or no longer manages training.")
    raw = base64.b64decode(ctx.params["data"])
    ctx.progress(5, "Checking every row, then recording the completions")

    def between(recorded: int, total: int) -> None:
        """A part is recorded: commit it, then show how far the import got."""
        commit_keeping_loaded()
        ctx.progress(5 + 90 * recorded // total, f"Recorded {recorded:,} of {total:,} completions")

    try:
        plan = import_completions(raw, actor, str(ctx.params.get("source") or "upload"), between)
    except CompletionImportError as refused:
        db.session.rollback()
        return {"refused": True, "problems": [list(p) for p in refused.problems[:MAX_PROBLEMS_SHOWN]],
                "problem_count": len(refused.problems)}
    db.session.commit()
    return {"refused": False, "rows": len(plan.rows), "imported": len(plan.to_record),
            "skipped": len(plan.skipped)}
