"""Chain verification as a job: nightly, and on demand from the audit page."""

from __future__ import annotations

from typing import Any

from audit.trail.chain_verification import run_verification
from core.auth.models import User
from core.extensions import db
from core.jobs.registry import JobContext

VERIFY_JOB = "audit.verify_chain"


def verify_chain_job(ctx: JobContext) -> dict[str, Any]:
    """Verify the audit trail and keep the result (commits)."""
    user = db.session.get(User, ctx.user_id) if ctx.user_id is not None else None
    run = run_verification(str(ctx.params.get("source", "scheduler")), user)
    db.session.commit()
    return {"run_id": run.id, "ok": run.ok, "count": run.count, "head_seq": run.head_seq}
