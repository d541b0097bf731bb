"""The administrators' Jobs page: queued, running, failed (with the error) and finished; retry, cancel."""

from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from sqlalchemy import func, select

from core.auth.forms import ConfirmForm
from core.auth.models import User
from core.auth.permissions import Permission, require_permission
from core.extensions import db
from core.jobs.models import Job, JobStatus, JobWorker
from core.jobs.queue import JobError, cancel_job, retry_job
from core.jobs.registry import job_kinds
from core.jobs.worker import LEASE_SECONDS
from core.pagination import paginate
from core.timeutil import utcnow

bp = Blueprint("jobs", __name__)

FILTERS = {"active": ("Queued and running", (JobStatus.QUEUED, JobStatus.RUNNING)),
           "failed": ("Failed", (JobStatus.FAILED,)),
           "done": ("Finished", (JobStatus.DONE,)),
           "cancelled": ("Cancelled", (JobStatus.CANCELLED,)),
           "all": ("All", tuple(JobStatus))}


@bp.route("/admin/jobs")
@require_permission(Permission.JOBS_MANAGE)
def job_list():
    """Jobs by state, newest first, with the live workers."""
    shown = request.args.get("status", "active")
    if shown not in FILTERS:
        abort(400)
    page = paginate(select(Job).where(Job.status.in_(FILTERS[shown][1])).order_by(Job.id.desc()), per_page=50)
    creator_ids = {job.created_by_id for job in page.items if job.created_by_id is not None}
    creators = dict(db.session.execute(
        select(User.id, User.username).where(User.id.in_(creator_ids))).all()) if creator_ids else {}
    counts = dict(db.session.execute(select(Job.status, func.count()).group_by(Job.status)).all())
    filter_counts = {key: sum(counts.get(status, 0) for status in statuses)
                     for key, (_label, statuses) in FILTERS.items()}
    alive_after = utcnow() - timedelta(seconds=LEASE_SECONDS * 3)
    workers = list(db.session.execute(
        select(JobWorker).where(JobWorker.stopped_at.is_(None), JobWorker.heartbeat_at >= alive_after)
        .order_by(JobWorker.started_at)).scalars())
    return render_template("core/job_list.html", page=page, shown=shown, filters=FILTERS,
                           filter_counts=filter_counts, workers=workers, kinds=job_kinds(),
                           creators=creators, now=utcnow(),
                           form=ConfirmForm())


def _act(job_id: int, action: str) -> object:
    """Retry or cancel a job, then go back to the list."""
    if not ConfirmForm().validate_on_submit():
        abort(400)
    try:
        job = retry_job(job_id) if action == "retry" else cancel_job(job_id)
    except JobError as error:
        db.session.rollback()
        flash(str(error), "danger")
    else:
        db.session.commit()
        if action == "retry":
            flash(f"Job #{job.id} is queued again.", "success")
        elif job.status == JobStatus.CANCELLED:
            flash(f"Job #{job.id} is cancelled.", "success")
        else:
            flash(f"Job #{job.id} will stop at its next safe point.", "info")
    return redirect(url_for("jobs.job_list", status=request.args.get("status", "active")))


@bp.route("/admin/jobs/<int:job_id>/retry", methods=["POST"])
@require_permission(Permission.JOBS_MANAGE)
def job_retry(job_id: int):
    """Queue a failed or cancelled job again."""
    return _act(job_id, "retry")


@bp.route("/admin/jobs/<int:job_id>/cancel", methods=["POST"])
@require_permission(Permission.JOBS_MANAGE)
def job_cancel(job_id: int):
    """Cancel a queued job, or ask a running one to stop."""
    return _act(job_id, "cancel")
