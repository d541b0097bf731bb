"""Imaging retention pages: rules, archive settings, reviews, approval, execution, certificate, CSV."""

from __future__ import annotations

import csv
import io
from typing import Any

from flask import Response, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from audit import record
from audit.reports import services as report_services
from audit.reports.registry import ReportError
from core.auth.forms import ConfirmForm
from core.auth.permissions import Permission, has_permission, require_permission
from core.extensions import db
from core.forms import FieldError, select_choices, show_error
from inventory.models import Asset
from inventory.studies import execution, review, services
from inventory.studies.forms import ArchiveSettingsForm, RuleForm, StartReviewForm
from inventory.studies.models import DELETION_METHOD_TEXT, ItemOutcome, ReviewStatus, StudyReview
from inventory.studies.reports import CERTIFICATE_KIND
from inventory.studies.rules import CHECK_STATE_LAW
from inventory.views import bp

SHOWN_ITEMS = 1000
REVIEWERS = (Permission.RETENTION_MANAGE, Permission.ASSET_MANAGE)

# Audit actions recorded here (registered by the package's init_app).
AUDIT_ACTIONS = {"studies.list_exported": "List of a study review's studies downloaded (CSV)"}


@bp.app_template_global()
def mask_patient(value: str | None) -> str:
    """A patient identifier masked to its last four characters."""
    return services.mask(value)


@bp.route("/studies/rules", methods=["GET", "POST"])
@require_permission(Permission.RETENTION_MANAGE)
def study_rules():
    """The imaging retention rules, and the form that sets one."""
    form = RuleForm()
    if form.validate_on_submit():
        try:
            row = services.set_rule(form.modality.data, form.period.data, form.minors_until.data,
                                    form.anchor.data, current_user)
        except FieldError as error:
            db.session.rollback()
            show_error(form, error, "period")
        else:
            db.session.commit()
            flash(f"Rule saved: {row.name}.", "success")
            return redirect(url_for("inventory.study_rules"))
    archives = services.archive_nodes()
    return render_template("inventory/study_rules.html", form=form, rules=services.list_rules(),
                           check_state_law=CHECK_STATE_LAW, archives=archives,
                           settings=services.settings_by_archive(a.id for a in archives),
                           methods=DELETION_METHOD_TEXT), 422 if form.errors else 200


@bp.route("/studies/archives/<int:asset_id>", methods=["GET", "POST"])
@require_permission(Permission.ASSET_MANAGE)
def study_archive_settings(asset_id: int):
    """How PACS Desk queries and deletes studies on one archive."""
    asset = db.get_or_404(Asset, asset_id)
    stored = services.settings_for(asset_id)
    form = ArchiveSettingsForm(obj=stored)
    if form.validate_on_submit():
        try:
            services.save_settings(asset_id, services.ArchiveSettingsData(
                method=form.method.data, orthanc_url=form.orthanc_url.data or "",
                orthanc_username=form.orthanc_username.data or "",
                password_file=form.password_file.data or "",
                find_limit=form.find_limit.data, timeout=form.timeout.data or 30), current_user)
        except FieldError as error:
            db.session.rollback()
            show_error(form, error, "method")
        else:
            db.session.commit()
            flash(f"Settings of {asset.asset_tag} saved.", "success")
            return redirect(url_for("inventory.study_reviews"))
    return render_template("inventory/study_archive.html", form=form, asset=asset), \
        422 if form.errors else 200


@bp.route("/studies/reviews", methods=["GET", "POST"])
@require_permission(*REVIEWERS)
def study_reviews():
    """Recent reviews, and the form that starts one."""
    form = StartReviewForm()
    form.archive.choices = select_choices((a.id, f"{a.asset_tag} — {a.name}")
                                          for a in services.archive_nodes())
    if form.validate_on_submit():
        try:
            started = review.start_review(form.archive.data, current_user)
        except FieldError as error:
            db.session.rollback()
            show_error(form, error, "archive")
        else:
            db.session.commit()
            flash(f"Study review #{started.id} started: the archive is being listed.", "success")
            return redirect(url_for("inventory.study_review_detail", review_id=started.id))
    return render_template("inventory/study_review_list.html", form=form, reviews=review.recent_reviews()), \
        422 if form.errors else 200


def _review_or_404(review_id: int) -> StudyReview:
    """The review, or 404."""
    return db.get_or_404(StudyReview, review_id)


@bp.route("/studies/reviews/<int:review_id>")
@require_permission(*REVIEWERS)
def study_review_detail(review_id: int):
    """A review: its status, rules and holds, counts, the studies and what became of them."""
    found = _review_or_404(review_id)
    if review.expire_if_due(found):
        db.session.commit()
    rows = review.items(review_id)
    expired = [r for r in rows if not r.held]
    held = [r for r in rows if r.held]
    outcome_counts: dict[str, int] = {}
    for row in rows:
        if row.outcome is not None:
            outcome_counts[str(row.outcome)] = outcome_counts.get(str(row.outcome), 0) + 1
    can_approve = (found.status is ReviewStatus.PENDING and found.listed_at is not None
                   and has_permission(current_user, Permission.RETENTION_MANAGE)
                   and found.started_by_id != current_user.id)
    can_execute = (found.status is ReviewStatus.APPROVED
                   and has_permission(current_user, Permission.ASSET_MANAGE))
    return render_template(
        "inventory/study_review_detail.html", review=found, expired=expired[:SHOWN_ITEMS],
        expired_total=len(expired), held=held[:SHOWN_ITEMS], held_total=len(held),
        counts=review.counts_by_modality_year(expired), held_counts=review.counts_by_modality_year(held),
        approved_total=sum(1 for r in expired if r.approved), outcome_counts=outcome_counts,
        can_approve=can_approve, can_execute=can_execute, form=ConfirmForm(), destroyed=ItemOutcome.DESTROYED,
        method_text=DELETION_METHOD_TEXT.get(found.method) if found.method else DELETION_METHOD_TEXT[
            services.DeletionMethod.LIST_ONLY],
        can_certify=found.status in (ReviewStatus.DONE, ReviewStatus.FAILED) and found.executed_at is not None
        and has_permission(current_user, Permission.REPORT_COMPLIANCE))


def _refused(review_id: int, error: Exception) -> Any:
    """Flash a refusal and go back to the review."""
    db.session.rollback()
    flash(str(error), "danger")
    return redirect(url_for("inventory.study_review_detail", review_id=review_id))


@bp.route("/studies/reviews/<int:review_id>/approve", methods=["POST"])
@require_permission(Permission.RETENTION_MANAGE)
def study_review_approve(review_id: int):
    """Approve all the review's studies, or the ticked ones."""
    _review_or_404(review_id)
    if not ConfirmForm().validate_on_submit():
        abort(400)
    chosen = None if request.form.get("scope") == "all" else request.form.getlist("study")
    try:
        done = review.approve_review(review_id, current_user, chosen)
    except FieldError as error:
        return _refused(review_id, error)
    db.session.commit()
    flash(f"Study review #{done.id} approved; the approval is valid until {done.expires_at:%Y-%m-%d}.",
          "success")
    return redirect(url_for("inventory.study_review_detail", review_id=review_id))


@bp.route("/studies/reviews/<int:review_id>/execute", methods=["POST"])
@require_permission(Permission.ASSET_MANAGE)
def study_review_execute(review_id: int):
    """Queue the execution of an approved review."""
    _review_or_404(review_id)
    if not ConfirmForm().validate_on_submit():
        abort(400)
    try:
        execution.request_execution(review_id, current_user)
    except review.ReviewExpired as error:
        db.session.commit()  # the review is marked expired, with its audit event
        flash(str(error), "danger")
        return redirect(url_for("inventory.study_review_detail", review_id=review_id))
    except FieldError as error:
        return _refused(review_id, error)
    db.session.commit()
    flash(f"Study review #{review_id} is being executed.", "success")
    return redirect(url_for("inventory.study_review_detail", review_id=review_id))


@bp.route("/studies/reviews/<int:review_id>/certificate", methods=["POST"])
@require_permission(Permission.REPORT_COMPLIANCE)
def study_review_certificate(review_id: int):
    """Ask for the certificate of destruction of an executed review."""
    _review_or_404(review_id)
    if not ConfirmForm().validate_on_submit():
        abort(400)
    try:
        wanted = report_services.validate_request(
            CERTIFICATE_KIND, None, None, run_id=review_id,
            requested_by=f"{current_user.display_name} ({current_user.username})")
        job = report_services.request_report(wanted, current_user)
    except ReportError as error:
        return _refused(review_id, error)
    db.session.commit()
    return redirect(url_for("reports.detail", job_id=job.id))


@bp.route("/studies/reviews/<int:review_id>/studies.csv")
@require_permission(*REVIEWERS)
def study_review_csv(review_id: int):
    """The review's studies past retention as CSV, for a vendor to delete (patient IDs masked)."""
    found = _review_or_404(review_id)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["study_instance_uid", "study_date", "modalities", "accession_number", "patient_id",
                     "rule", "keep_until", "approved", "held_by", "outcome"])
    rows = review.items(review_id)
    for row in rows:
        writer.writerow([row.study_uid, row.study_date.isoformat(), row.modalities.replace("\\", "/"),
                         row.accession_number, services.mask(row.patient_id), row.rule,
                         row.keep_until.isoformat(), "yes" if row.approved else "no", row.held_by,
                         str(row.outcome or "")])
    record("studies.list_exported", object_type="study_review", object_id=found.id,
           details={"rows": len(rows), "archive": found.asset.asset_tag})
    db.session.commit()
    return Response(out.getvalue(), mimetype="text/csv", headers={
        "Content-Disposition": f"attachment; filename=study-review-{found.id}.csv"})
