"""Training pages: my training, recording completions, the compliance matrix and courses."""

from __future__ import annotations

import io
from typing import Any

from flask import abort, flash, redirect, render_template, request, send_file, url_for
from flask_login import current_user
from markupsafe import Markup

from audit.training import bulk
from audit.training import completions as training_completions
from audit.training import jobs as training_jobs
from audit.training import services as training
from audit.training.forms import (
    CompletionForm,
    CompletionImportConfirmForm,
    CompletionImportForm,
    CourseForm,
    MatrixFilterForm,
    SessionForm,
)
from audit.training.models import Course, TrainingAssignment, TrainingCompletion, TrainingSession
from audit.views import bp
from core.auth.forms import ROLE_CHOICES
from core.auth.permissions import Permission, has_permission, require_permission
from core.extensions import db
from core.filenames import clean_file_name
from core.forms import (
    LARGE_IMPORT_ROWS,
    carried_file,
    carry_file,
    is_large_import,
    select_choices,
    show_error,
)
from core.jobs.queue import enqueue, get_job
from core.navigation import Banner

PREVIEW_ROWS = 100   # rows a preview lists; its counts and its problems cover the whole file


def _can_manage() -> bool:
    """Whether the current user manages training for everyone."""
    return has_permission(current_user, Permission.TRAINING_MANAGE)


@bp.route("/training/mine")
@require_permission(Permission.TRAINING_OWN)
def my_training():
    """The signed-in user's courses, status and due dates."""
    training.ensure_assignments()
    db.session.commit()
    return render_template("audit/training_mine.html",
                           statuses=training.user_statuses(current_user.id))


@bp.route("/training/assignments/<int:assignment_id>", methods=["GET", "POST"])
@require_permission(Permission.TRAINING_OWN)
def assignment_detail(assignment_id: int):
    """One assignment: its history and the form to record a completion."""
    assignment = db.get_or_404(TrainingAssignment, assignment_id)
    if assignment.user_id != current_user.id and not _can_manage():
        abort(404)
    form = CompletionForm()
    if assignment.user_id != current_user.id:
        form.attested.label.text = training.OFFICER_ATTESTATION
    if form.validate_on_submit():
        upload = form.certificate.data
        filename = getattr(upload, "filename", "")
        certificate = (training_completions.Certificate(upload.filename, upload.stream)
                       if upload is not None and filename else None)
        new = training_completions.NewCompletion(
            assignment_id=assignment.id, completed_on=form.completed_on.data, score=form.score.data,
            attested=form.attested.data, certificate=certificate)
        try:
            training_completions.record_completion(new, current_user, _can_manage())
        except training.TrainingError as error:
            db.session.rollback()
            show_error(form, error, "completed_on")
        else:
            db.session.commit()
            flash(f"Completion of {assignment.course.title} recorded.", "success")
            return redirect(url_for("audit.assignment_detail", assignment_id=assignment.id))
    history = training_completions.completion_history(assignment.id)
    status = training.status_of(assignment.course, assignment, next(iter(history), None),
                                training.local_today())
    return render_template("audit/assignment_detail.html", assignment=assignment, form=form,
                           status=status, history=history,
                           on_behalf=assignment.user_id != current_user.id,
                           can_manage=_can_manage()), 200 if not form.errors else 422


@bp.route("/training/completions/<int:completion_id>/certificate")
@require_permission(Permission.TRAINING_OWN)
def certificate_download(completion_id: int):
    """Download a completion's certificate (its owner or a training manager); audited."""
    completion = db.get_or_404(TrainingCompletion, completion_id)
    if (completion.user_id != current_user.id and not _can_manage()) or completion.certificate_size is None:
        abort(404)
    data, mimetype = completion.certificate_data or b"", completion.certificate_type
    name = clean_file_name(completion.certificate_name or "", f"certificate-{completion.id}")
    response = send_file(io.BytesIO(data), mimetype=mimetype, as_attachment=True, download_name=name)
    training_completions.record_certificate_download(completion)
    db.session.commit()
    return response


def _matrix_filter(form: MatrixFilterForm) -> training.MatrixFilter:
    """Plain matrix filters from the form."""
    form.department.choices = select_choices([("", "Any")] + [(d, d) for d in training.departments()])
    if not form.validate():
        return training.MatrixFilter()
    return training.MatrixFilter(role=form.role.data or "", department=form.department.data or "",
                                 status=form.status.data or "")


@bp.route("/training")
@require_permission(Permission.TRAINING_MANAGE)
def training_matrix():
    """Users by courses with status, filtered by role, department and status."""
    training.ensure_assignments()
    db.session.commit()
    form = MatrixFilterForm(request.args)
    courses, rows = training.matrix(_matrix_filter(form))
    overdue = [s for _, cells in rows for s in cells.values() if s.needs_action]
    return render_template("audit/training_matrix.html", form=form, courses=courses, rows=rows,
                           overdue=sorted(overdue, key=lambda s: s.due_on or training.local_today()))


@bp.route("/training/export.csv")
@require_permission(Permission.TRAINING_MANAGE)
def training_export():
    """The filtered matrix as CSV, one row per user and course; the export is audited."""
    training.ensure_assignments()
    form = MatrixFilterForm(request.args)
    flt = _matrix_filter(form)
    text = training.export_matrix(flt)
    db.session.commit()
    return text, 200, {"Content-Type": "text/csv; charset=utf-8",
                                    "Content-Disposition": 'attachment; filename="training-matrix.csv"'}


@bp.route("/training/sessions/new", methods=["GET", "POST"])
@require_permission(Permission.TRAINING_MANAGE)
def session_new():
    """Record one session of a course for many attendees at once, all or nothing."""
    form = SessionForm()
    form.course_id.choices = [(c.id, c.title) for c in training.list_courses(active_only=True)]
    attendees = bulk.attendee_choices()
    if request.method == "GET":
        form.completed_on.data = training.local_today()
    if form.validate_on_submit():
        new = bulk.NewSession(course_id=form.course_id.data, completed_on=form.completed_on.data,
                              attendee_ids=form.attendee_ids.data or [], attested=form.attested.data,
                              trainer=form.trainer.data or "", notes=form.notes.data or "")
        try:
            session = bulk.record_session(new, current_user)
        except training.TrainingError as error:
            db.session.rollback()
            show_error(form, error, "attendee_ids")
        else:
            db.session.commit()
            return redirect(url_for("audit.session_detail", session_id=session.id))
    chosen = set(form.attendee_ids.data or [])
    return render_template("audit/training_session_new.html", form=form, attendees=attendees, chosen=chosen,
                           roles=ROLE_CHOICES), 200 if not form.errors else 422


@bp.route("/training/sessions/<int:session_id>")
@require_permission(Permission.TRAINING_MANAGE)
def session_detail(session_id: int):
    """A recorded session: who got a completion and who was skipped, and why."""
    session = db.get_or_404(TrainingSession, session_id)
    return render_template("audit/training_session_detail.html", session=session,
                           completions=bulk.session_completions(session.id))


@bp.route("/training/import", methods=["GET", "POST"])
@require_permission(Permission.TRAINING_MANAGE)
def completion_import():
    """Import past completions from CSV: a preview with every problem first, then all rows or none."""
    form, confirm = CompletionImportForm(), CompletionImportConfirmForm()
    plan: bulk.ImportPlan | None = None
    problems: list[tuple[int, str, str]] = []
    if "payload" in request.form:
        raw = carried_file(request.form["payload"]) if confirm.validate_on_submit() else None
        if raw is None:
            flash("The checked file did not come back intact; choose it again.", "danger")
            return redirect(url_for("audit.completion_import"))
        source = confirm.source.data or "upload"
        if is_large_import(raw):
            job = enqueue(training_jobs.IMPORT_JOB, {"data": carry_file(raw), "source": source},
                          user_id=current_user.id, title=f"Import of past training completions from {source}")
            db.session.commit()
            return redirect(url_for("audit.completion_import_job", job_id=job.id))
        try:
            plan = bulk.import_completions(raw, current_user, source)
        except bulk.CompletionImportError as error:
            db.session.rollback()
            problems = error.problems
        else:
            db.session.commit()
            flash(f"Imported {len(plan.to_record)} completion(s); {len(plan.skipped)} row(s) skipped "
                  "because they were already recorded.", "success")
            return redirect(url_for("audit.training_matrix"))
    elif form.validate_on_submit():
        raw = form.file.data.read()
        try:
            plan = bulk.plan_import(raw)
        except bulk.CompletionImportError as error:
            problems = error.problems
        else:
            confirm.payload.data = carry_file(raw)
            confirm.source.data = clean_file_name(form.file.data.filename or "", "upload.csv")
        db.session.rollback()
    failed = bool(problems or form.errors)
    return render_template("audit/training_import.html", form=form, confirm=confirm, plan=plan,
                           problems=problems, columns=bulk.IMPORT_COLUMNS,
                           date_formats=bulk.DATE_FORMATS_TEXT, max_rows=bulk.MAX_IMPORT_ROWS,
                           preview_rows=PREVIEW_ROWS, large_rows=LARGE_IMPORT_ROWS,
                           attestation=training.OFFICER_ATTESTATION), 422 if failed else 200


@bp.route("/training/import/jobs/<int:job_id>")
@require_permission(Permission.TRAINING_MANAGE)
def completion_import_job(job_id: int):
    """A large import running in the job worker: its progress, then what it imported or refused."""
    job = get_job(job_id)
    if job is None or job.kind != training_jobs.IMPORT_JOB or job.created_by_id != current_user.id:
        abort(404)
    result = job.result or {}
    return render_template("audit/training_import_job.html", job=job, result=result,
                           problems=[tuple(p) for p in result.get("problems", [])],
                           problem_count=result.get("problem_count", 0))


@bp.route("/training/courses")
@require_permission(Permission.TRAINING_MANAGE)
def course_list():
    """Every course."""
    return render_template("audit/course_list.html", courses=training.list_courses())


def _course_data(form: CourseForm) -> training.CourseData:
    """Plain course values from the form."""
    return training.CourseData(title=form.title.data or "", description=form.description.data or "",
                               recurrence_months=form.recurrence_months.data,
                               required_roles=form.required_roles.data or [],
                               days_to_complete=form.days_to_complete.data, is_active=form.is_active.data)


@bp.route("/training/courses/new", methods=["GET", "POST"])
@bp.route("/training/courses/<int:course_id>", methods=["GET", "POST"])
@require_permission(Permission.TRAINING_MANAGE)
def course_edit(course_id: int | None = None):
    """Create or change a course."""
    course = db.get_or_404(Course, course_id) if course_id else None
    form = CourseForm(obj=course)
    if course is not None and request.method == "GET":
        form.required_roles.data = course.roles
    if form.validate_on_submit():
        try:
            if course is None:
                training.create_course(_course_data(form))
            else:
                training.update_course(course.id, _course_data(form))
        except training.TrainingError as error:
            db.session.rollback()
            show_error(form, error, "title")
        else:
            db.session.commit()
            flash("Course saved.", "success")
            return redirect(url_for("audit.course_list"))
    return render_template("audit/course_edit.html", form=form, course=course), \
        200 if not form.errors else 422


def overdue_training_banner(user: Any) -> list[Banner]:
    """A strip on every page while the user has overdue or expired training."""
    if not has_permission(user, Permission.TRAINING_OWN):
        return []
    late = training.overdue_titles(user.id)
    if not late:
        return []
    titles = ", ".join(late)
    return [Banner("warning", Markup(
        '<strong>Training overdue:</strong> {titles}. <a class="alert-link" href="{url}">My training</a>'
    ).format(titles=titles, url=url_for("audit.my_training")))]


def training_due_panel() -> dict[str, Any]:
    """The home page's list of the signed-in person's courses not complete (overdue first)."""
    order = {training.Status.OVERDUE: 0, training.Status.EXPIRED: 0, training.Status.DUE_SOON: 1}
    due = [s for s in training.user_statuses(current_user.id) if s.status != training.Status.COMPLETE]
    return {"statuses": sorted(due, key=lambda s: (order.get(s.status, 2), s.due_on or s.assignment.due_on))}
