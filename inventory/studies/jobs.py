"""Study review jobs: list an archive's studies past retention; execute an approved review."""

from __future__ import annotations

from typing import Any

from core.jobs.registry import JobContext
from core.jobs.worker import Fail
from inventory.studies.dimse import ArchiveError
from inventory.studies.execution import run_execution
from inventory.studies.models import ItemOutcome
from inventory.studies.review import items, run_listing
from inventory.studies.services import StudyError


def review_job(ctx: JobContext) -> dict[str, Any]:
    """List the review's archive (commits); an archive that stops answering fails the review clearly."""
    review_id = int(ctx.params["review_id"])
    try:
        review = run_listing(review_id, ctx.progress)
    except StudyError as error:
        return {"skipped": str(error)}
    except ArchiveError as error:
        raise Fail(f"Study review #{review_id} failed: {error}") from None
    if review.error:
        raise Fail(f"Study review #{review_id} failed: {review.error}")
    rows = items(review_id)
    return {"review": review_id, "studies": review.studies_seen,
            "past_retention": sum(1 for r in rows if not r.held), "held": sum(1 for r in rows if r.held)}


def execute_job(ctx: JobContext) -> dict[str, Any]:
    """Execute an approved review (commits per batch); a stop (credentials) fails the job with why."""
    review_id = int(ctx.params["review_id"])
    try:
        review = run_execution(review_id, ctx.progress)
    except StudyError as error:
        return {"skipped": str(error)}
    if review.error:
        raise Fail(f"Study review #{review_id}: {review.error}")
    rows = items(review_id)
    return {"review": review_id,
            "destroyed": sum(1 for r in rows if r.outcome is ItemOutcome.DESTROYED),
            "still_present": sum(1 for r in rows if r.outcome is ItemOutcome.STILL_PRESENT)}
