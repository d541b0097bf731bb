"""Chain verification as jobs: a full walk nightly (and from the audit page), an incremental one hourly.

The nightly walk re-checks every event, so an event altered in place behind an anchor is
found within a day; the hourly one only walks what was appended since the last anchor (under
a second for a thousand new events on a million-event trail), so a deleted tail or a forged
append is found, and the head anchored outside the database, within the hour.
"""

from __future__ import annotations

from typing import Any

from audit.trail.chain_verification import head_is_anchored, run_verification
from core.extensions import db
from core.jobs.registry import JobContext

VERIFY_JOB = "audit.verify_chain"
ANCHOR_JOB = "audit.anchor_chain"
NIGHTLY = 24 * 3600.0
HOURLY = 3600.0


def verify_chain_job(ctx: JobContext) -> dict[str, Any]:
    """Walk the whole trail, anchor its head and keep the result (commits)."""
    run = run_verification(str(ctx.params.get("source", "scheduler")), ctx.user_id, full=True)
    db.session.commit()
    return {"run_id": run.id, "ok": run.ok, "count": run.count, "head_seq": run.head_seq,
            "anchor_n": run.anchor_n, "anchor_note": run.anchor_note}


def anchor_chain_job(ctx: JobContext) -> dict[str, Any]:
    """Verify what was appended since the last anchor and anchor the new head (commits).

    Skipped when nothing but the last verification's own event was written since.
    """
    if head_is_anchored():
        db.session.rollback()
        return {"skipped": "no events since the last anchor"}
    db.session.rollback()
    run = run_verification("scheduler", full=False)
    db.session.commit()
    return {"run_id": run.id, "ok": run.ok, "count": run.count, "head_seq": run.head_seq,
            "walked": run.walked, "anchor_n": run.anchor_n, "anchor_note": run.anchor_note}
