"""Reports blueprint: choose, generate and download PDF reports."""

from __future__ import annotations

import re

from flask import Blueprint, abort, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select

from audit.reports import (
    kinds,  # noqa: F401 - registers the audit report kinds
    services,
    stored_files,  # noqa: F401 - registers stored report files as a retention record class
)
from audit.reports.forms import ReportForm
from audit.reports.models import ReportJob, ReportStatus
from audit.reports.registry import ReportError, kinds_for, report_kind, report_kinds
from core.auth.permissions import Permission, has_permission, require_permission
from core.extensions import db
from core.forms import select_choices, show_error

bp = Blueprint("reports", __name__)

REPORT_PERMISSIONS = (Permission.REPORT_OPERATIONS, Permission.REPORT_COMPLIANCE)
JOB_ID = re.compile(r"^[A-Za-z0-9_-]{8,32}$")


def _sees_all() -> bool:
    """Compliance officers and administrators see and download every report."""
    return has_permission(current_user, Permission.REPORT_COMPLIANCE)


def _recent_jobs() -> list[ReportJob]:
    """The latest jobs this user may see."""
    query = select(ReportJob).order_by(ReportJob.created_at.desc()).limit(25)
    if not _sees_all():
        query = query.where(ReportJob.requested_by_id == current_user.id)
    return list(db.session.scalars(query))


@bp.route("/reports", methods=["GET", "POST"])
@require_permission(*REPORT_PERMISSIONS)
def index():
    """The report form and the user's recent reports."""
    allowed = kinds_for(current_user)
    form = ReportForm()
    form.kind.choices = select_choices((k.key, k.title) for k in allowed)
    if request.method == "POST" and report_kind(form.kind.data or "") is not None and \
            form.kind.data not in {k.key for k in allowed}:
        abort(403)
    if form.validate_on_submit():
        try:
            report = services.validate_request(
                form.kind.data, form.date_from.data, form.date_to.data, form.user.data,
                form.object.data, form.run_id.data,
                requested_by=f"{current_user.display_name} ({current_user.username})",
                include_identifiers=bool(form.include_identifiers.data))
            job = services.request_report(report, current_user)
        except ReportError as exc:
            show_error(form, exc, "kind")
        else:
            db.session.commit()
            return redirect(url_for("reports.detail", job_id=job.id))
    return render_template("reports/report_list.html", form=form, kinds=allowed,
                           jobs=_recent_jobs(), kind_titles={k.key: k.title for k in report_kinds()}), \
        (400 if form.errors else 200)


def _job_or_404(job_id: str) -> ReportJob:
    """A job the current user may see, or 404."""
    job = db.session.get(ReportJob, job_id) if JOB_ID.match(job_id) else None
    if job is None or (job.requested_by_id != current_user.id and not _sees_all()):
        abort(404)
    return job


@bp.route("/reports/<job_id>")
@require_permission(*REPORT_PERMISSIONS)
def detail(job_id: str):
    """A report's progress, then its download link."""
    job = _job_or_404(job_id)
    kind = report_kind(job.kind)
    return render_template("reports/report_detail.html", job=job,
                           title=kind.title if kind else job.kind,
                           waiting=not job.is_finished and not job.is_abandoned)


@bp.route("/reports/<job_id>/download")
@require_permission(*REPORT_PERMISSIONS)
def download(job_id: str):
    """The PDF, for its requester or a compliance officer; every download is audited."""
    job = _job_or_404(job_id)
    if job.status != ReportStatus.DONE or job.pdf is None:
        abort(404)
    services.record_download(job)
    db.session.commit()
    params = job.parameters
    period = f"-{params['from']}-{params['to']}" if params.get("from") else ""
    name = f"pacsdesk-{job.kind}{period}-{job.id}.pdf"
    return job.pdf, 200, {
        "Content-Type": "application/pdf",
        "Content-Disposition": f'attachment; filename="{name}"',
        "Cache-Control": "no-store",
    }


