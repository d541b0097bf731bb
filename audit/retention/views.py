"""Retention pages: policies, legal holds, dry run and confirmed runs."""

from __future__ import annotations

from datetime import timedelta

from flask import abort, flash, redirect, render_template, url_for
from flask_login import current_user

from audit.retention import engine as retention
from audit.retention import holds as legal_holds
from audit.retention.forms import HoldForm, PolicyForm, ReleaseHoldForm, RunConfirmForm
from audit.retention.jobs import RETENTION_JOB
from audit.retention.models import LegalHold, RetentionRun
from audit.retention.registry import record_classes
from audit.views import bp
from core.auth.permissions import Permission, require_permission
from core.extensions import db
from core.forms import select_choices, show_error
from core.jobs.models import JobStatus
from core.jobs.queue import enqueue, get_job
from core.timeutil import DateOutOfRange, local_day_bounds


@bp.route("/retention")
@require_permission(Permission.RETENTION_MANAGE)
def retention_home():
    """Policies, active and released holds, and recent runs."""
    policies = retention.list_policies()
    db.session.commit()
    holds = db.session.execute(db.select(LegalHold).order_by(LegalHold.id.desc())).scalars().all()
    return render_template("audit/retention_home.html", policies=policies, holds=holds,
                           runs=retention.recent_runs(), running=retention.running_run(),
                           describe=legal_holds.describe_scope, release_form=ReleaseHoldForm())


@bp.route("/retention/policies/<key>", methods=["GET", "POST"])
@require_permission(Permission.RETENTION_MANAGE)
def policy_edit(key: str):
    """Change one record class's retention period; floors are enforced."""
    if key not in record_classes():
        abort(404)
    rc = record_classes()[key]
    retention.ensure_default_policies()
    policy = retention.policy_for(key)
    form = PolicyForm(obj=policy)
    form.anchor.choices = select_choices((a, a) for a in rc.anchors)
    if form.validate_on_submit():
        try:
            retention.update_policy(key, form.years.data, form.months.data, form.days.data,
                                    form.anchor.data, form.enabled.data, current_user)
        except retention.RetentionError as error:
            db.session.rollback()
            show_error(form, error, "years")
        else:
            db.session.commit()
            flash(f"Retention policy for {rc.label} saved.", "success")
            return redirect(url_for("audit.retention_home"))
    return render_template("audit/policy_edit.html", form=form, rc=rc), 200 if not form.errors else 422


@bp.route("/retention/holds/new", methods=["GET", "POST"])
@require_permission(Permission.RETENTION_MANAGE)
def hold_new():
    """Place a legal hold; a scope that matches nothing is refused."""
    form = HoldForm()
    form.record_class.choices = select_choices(
        [("", "—")] + [(k, rc.label) for k, rc in sorted(record_classes().items())])
    if form.validate_on_submit():
        try:
            start, after = local_day_bounds(form.start.data, form.end.data, ("start", "end"))
            new = legal_holds.NewHold(
                reason=form.reason.data, kind=form.kind.data, object_key=form.object_key.data or "",
                record_class=form.record_class.data or "", start=start,
                end=after - timedelta(microseconds=1) if after else None)
            hold = legal_holds.place_hold(new, current_user)
        except (legal_holds.RetentionError, DateOutOfRange) as error:
            db.session.rollback()
            show_error(form, error, "kind")
        else:
            db.session.commit()
            flash(f"Legal hold #{hold.id} placed.", "success")
            return redirect(url_for("audit.retention_home"))
    return render_template("audit/hold_new.html", form=form), 200 if not form.errors else 422


@bp.route("/retention/holds/<int:hold_id>/release", methods=["POST"])
@require_permission(Permission.RETENTION_MANAGE)
def hold_release(hold_id: int):
    """Release a hold (once)."""
    form = ReleaseHoldForm()
    if not form.validate_on_submit():
        flash("Give a reason for releasing the hold.", "danger")
        return redirect(url_for("audit.retention_home"))
    try:
        legal_holds.release_hold(hold_id, form.reason.data, current_user)
    except legal_holds.RetentionError as error:
        db.session.rollback()
        flash(str(error), "danger")
    else:
        db.session.commit()
        flash(f"Legal hold #{hold_id} released.", "success")
    return redirect(url_for("audit.retention_home"))


@bp.route("/retention/run", methods=["GET", "POST"])
@require_permission(Permission.RETENTION_MANAGE)
def retention_run():
    """Show the dry run first; a confirmed POST runs retention and shows its record."""
    form = RunConfirmForm()
    if form.validate_on_submit():
        try:
            retention.confirmed_moment(form.plan_as_of.data or "")
        except retention.RetentionChanged as refused:
            flash(str(refused), "danger")
            return redirect(url_for("audit.retention_run"))
        job = enqueue(RETENTION_JOB, {"expected_digest": form.plan_digest.data or "",
                                      "as_of": form.plan_as_of.data}, user_id=current_user.id,
                      dedup_key="retention:run", title="Retention run confirmed after a dry run")
        db.session.commit()
        return redirect(url_for("audit.retention_job", job_id=job.id))
    plan = retention.dry_run()
    form.plan_digest.data = plan.digest
    form.plan_as_of.data = plan.as_of
    return render_template("audit/retention_run.html", plan=plan, form=form,
                           running=retention.running_run())


@bp.route("/retention/jobs/<int:job_id>")
@require_permission(Permission.RETENTION_MANAGE)
def retention_job(job_id: int):
    """A confirmed run waiting for, or running in, the job worker; links to the run's record when done."""
    job = get_job(job_id)
    if job is None or job.kind != RETENTION_JOB:
        abort(404)
    result = job.result or {}
    run_id = result.get("run_id")
    if job.status == JobStatus.DONE and run_id:
        flash(f"Retention run #{run_id} destroyed {result['destroyed']} records.", "success")
        return redirect(url_for("audit.retention_run_detail", run_id=run_id))
    return render_template("audit/retention_job.html", job=job)


@bp.route("/retention/runs/<int:run_id>")
@require_permission(Permission.RETENTION_MANAGE)
def retention_run_detail(run_id: int):
    """One run's record: policies, counts, digest."""
    run = db.get_or_404(RetentionRun, run_id)
    return render_template("audit/retention_run_detail.html", run=run,
                           policies=run.policies, counts=run.counts,
                           held=run.held_counts, digests=run.class_digests,
                           spans={c["key"]: c for c in run.classes},
                           classes=record_classes())
