"""Audit trail pages: search and export, chain verification and its acknowledgement."""

from __future__ import annotations

from flask import (
    Response,
    abort,
    flash,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from flask_login import current_user
from sqlalchemy import select

from audit.trail import search
from audit.trail.chain_verification import (
    AcknowledgeError,
    acknowledge_failure,
    last_verification,
)
from audit.trail.forms import AuditSearchForm
from audit.trail.jobs import VERIFY_JOB
from audit.views import bp
from core.auth.forms import ConfirmForm
from core.auth.permissions import Permission, require_permission
from core.database import commit_keeping_loaded
from core.extensions import db
from core.jobs.models import ACTIVE, Job
from core.jobs.queue import enqueue
from core.timeutil import DateOutOfRange, utcnow


def _filter_from(form: AuditSearchForm) -> search.AuditFilter:
    """Plain filter values from a validated search form."""
    return search.AuditFilter(
        date_from=form.date_from.data, date_to=form.date_to.data,
        username=(form.username.data or "").strip(), action=form.action.data or "",
        object_type=(form.object_type.data or "").strip(), object_id=(form.object_id.data or "").strip(),
        outcome=form.outcome.data or "", client_address=(form.client_address.data or "").strip(),
        words=(form.q.data or "").strip())


WEB_VERIFY = "chain-verification:web"
MAX_CURSOR = 2**63 - 1  # the largest chain position a database integer holds


def _cursor(name: str) -> int | None:
    """A positive integer paging cursor from the query string (clamped to MAX_CURSOR), or None."""
    value = request.args.get(name, "")
    if not value.isascii() or not value.isdigit():
        return None
    return MAX_CURSOR if len(value) > 19 else min(int(value), MAX_CURSOR)


def _checked_filter(form: AuditSearchForm) -> search.AuditFilter | None:
    """The form's filter, or None with the error put on the date field that is out of range."""
    try:
        return _filter_from(form)
    except DateOutOfRange as error:
        field = getattr(form, error.field or "date_from")
        field.errors = [*field.errors, str(error)]
        return None


@bp.route("/audit")
@require_permission(Permission.AUDIT_READ)
def search_events():
    """Search the trail, newest first, a page at a time; the search itself is audited."""
    form = AuditSearchForm(request.args)
    page, total = None, None
    flt = _checked_filter(form) if form.validate() else None
    if flt is not None:
        page = search.search_events(flt, before=_cursor("before"), after=_cursor("after"))
        total = search.count_events(flt)
        commit_keeping_loaded()  # the events found never change
    args = {k: v for k, v in request.args.items() if k not in {"before", "after"}}
    pending = db.session.execute(select(Job).where(Job.dedup_key == WEB_VERIFY, Job.status.in_(ACTIVE))
                                 ).scalar_one_or_none()
    return render_template("audit/event_search.html", form=form, page=page, args=args, total=total,
                           count_cap=search.COUNT_CAP,
                           verification=last_verification(), pending_verification=pending,
                           confirm=ConfirmForm())


@bp.route("/audit/export.csv")
@require_permission(Permission.AUDIT_READ)
def export_events():
    """Stream the filtered events as CSV; the export is audited before the first row."""
    form = AuditSearchForm(request.args)
    flt = _checked_filter(form) if form.validate() else None
    if flt is None:
        flash("Fix the search filters before exporting.", "danger")
        return redirect(url_for("audit.search_events", **request.args))
    search.record_export(flt)
    db.session.commit()
    name = f"audit-trail-{utcnow():%Y%m%d-%H%M%S}.csv"
    return Response(stream_with_context(search.export_rows(flt)), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@bp.route("/audit/verify", methods=["POST"])
@require_permission(Permission.AUDIT_READ)
def verify_now():
    """Verify the chain now and show the result."""
    if not ConfirmForm().validate_on_submit():
        abort(400)
    enqueue(VERIFY_JOB, {"source": "web"}, user_id=current_user.id, dedup_key=WEB_VERIFY,
            title="Chain verification asked for on the audit page")
    db.session.commit()
    flash("The chain is being verified; the result appears here when it is done.", "info")
    return redirect(url_for("audit.search_events") + "#verification")


@bp.route("/audit/verifications/<int:run_id>/acknowledge", methods=["POST"])
@require_permission(Permission.AUDIT_READ)
def acknowledge_verification(run_id: int):
    """Acknowledge a broken-chain finding; the banner goes away."""
    if not ConfirmForm().validate_on_submit():
        abort(400)
    try:
        acknowledge_failure(run_id, current_user)
    except AcknowledgeError as error:
        db.session.rollback()
        flash(str(error), "danger")
    else:
        db.session.commit()
        flash("Acknowledged. Investigate the break and keep the findings with your incident records.",
              "info")
    return redirect(url_for("audit.search_events") + "#verification")

