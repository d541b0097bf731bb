"""Queueing jobs in the caller's transaction, and what people do with them (retry, cancel)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from core import audit_sink
from core.database import rowcount
from core.extensions import db
from core.forms import FieldError
from core.jobs.models import ACTIVE, Job, JobStatus, JobWorker
from core.jobs.registry import JobContext, job_kinds
from core.timeutil import utcnow

# Audit actions recorded here (registered by core's init_app).
AUDIT_ACTIONS = {
    "job.retried": "Failed or cancelled job queued again",
    "job.cancelled": "Job cancelled",
}


class JobError(FieldError):
    """A job cannot be queued, retried or cancelled; the message says why."""


def enqueue(kind: str, params: dict[str, Any] | None = None, *, user_id: int | None = None,
            dedup_key: str | None = None, title: str = "", run_after: datetime | None = None,
            priority: int | None = None) -> Job:
    """Queue a job in the caller's transaction (it runs once that commits); flushes.

    With ``dedup_key``, a job already queued or running under that key is returned instead of
    a second one (a node's check, a sweep).
    """
    registered = job_kinds().get(kind)
    if registered is None:
        raise JobError(f"There is no job kind {kind!r}.")
    values = {"kind": kind, "params": params or {}, "status": JobStatus.QUEUED,
              "priority": registered.priority if priority is None else priority,
              "dedup_key": dedup_key, "title": title or registered.title, "created_at": utcnow(),
              "created_by_id": user_id, "run_after": run_after or utcnow(), "attempts": 0,
              "max_attempts": registered.max_attempts, "cancel_requested": False, "progress": 0,
              "stage": ""}
    if dedup_key is None:
        job = Job(**values)
        db.session.add(job)
        db.session.flush()
        return job
    insert = pg_insert if db.session.get_bind().dialect.name == "postgresql" else sqlite_insert
    db.session.execute(insert(Job).values(**values).on_conflict_do_nothing())
    return db.session.execute(
        select(Job).where(Job.dedup_key == dedup_key, Job.status.in_(ACTIVE))
        .order_by(Job.id.desc()).limit(1)).scalar_one()


def queued_count(kind: str, user_id: int) -> int:
    """How many jobs of ``kind`` the user has queued or running."""
    return db.session.execute(select(func.count()).select_from(Job).where(
        Job.kind == kind, Job.created_by_id == user_id, Job.status.in_(ACTIVE))).scalar_one()


def get_job(job_id: int) -> Job | None:
    """The job with ``job_id``."""
    return db.session.get(Job, job_id)


def retry_job(job_id: int) -> Job:
    """Queue a failed or cancelled job again from its first attempt (flushes, audited)."""
    job = db.session.get(Job, job_id, with_for_update=True)
    if job is None:
        raise JobError("There is no such job.")
    if job.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
        raise JobError(f"Job #{job.id} is {job.status.label.lower()}: only failed or cancelled jobs "
                       "can be retried.")
    previous = job.status
    job.status, job.attempts, job.run_after = JobStatus.QUEUED, 0, utcnow()
    job.error, job.finished_at, job.cancel_requested, job.progress, job.stage = None, None, False, 0, ""
    db.session.flush()
    audit_sink.record("job.retried", object_type="job", object_id=job.id,
                      details={"kind": job.kind, "was": previous.value})
    return job


def cancel_job(job_id: int) -> Job:
    """Cancel a queued job now, or ask a running one to stop at its next safe point (audited)."""
    job = db.session.get(Job, job_id, with_for_update=True)
    if job is None:
        raise JobError("There is no such job.")
    if job.status not in ACTIVE:
        raise JobError(f"Job #{job.id} is {job.status.label.lower()}: there is nothing to cancel.")
    if job.status == JobStatus.QUEUED:
        job.status, job.finished_at, job.error = JobStatus.CANCELLED, utcnow(), "Cancelled before it started."
    else:
        job.cancel_requested = True
    db.session.flush()
    audit_sink.record("job.cancelled", object_type="job", object_id=job.id,
                      details={"kind": job.kind, "running": job.status == JobStatus.RUNNING})
    return job


def purge_finished(before: datetime) -> int:
    """Delete finished, failed and cancelled jobs that ended before ``before``; returns how many."""
    return rowcount(db.session.execute(delete(Job).where(
        Job.status.not_in(ACTIVE), Job.finished_at < before)))



KEEP_FINISHED = timedelta(days=30)


def cleanup_job(ctx: JobContext) -> dict[str, Any]:
    """Forget finished jobs after 30 days and workers that stopped a day ago (commits)."""
    now = utcnow()
    jobs = purge_finished(now - KEEP_FINISHED)
    workers = rowcount(db.session.execute(delete(JobWorker).where(
        JobWorker.heartbeat_at < now - timedelta(days=1))))
    db.session.commit()
    return {"jobs_forgotten": jobs, "workers_forgotten": workers}
