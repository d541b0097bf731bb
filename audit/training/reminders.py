"""Training reminders: each person hears 30 and 7 days before a course is due, on the day, and once overdue.

A stage is announced once per assignment and due date (``notify``'s key), so a day the job
did not run is caught up the next day, and a new due date (after a completion) starts over.
Compliance officers get a weekly digest of the overdue count.
"""

from __future__ import annotations

from collections import Counter
from datetime import date
from typing import Any

from audit.training.services import AssignmentStatus, _assignments_query, _statuses, local_today
from core.auth.models import Role
from core.extensions import db
from core.jobs.registry import JobContext
from core.mail.compose import Notice
from core.notifications import NotificationKind, notify, users_with_roles

REMINDER = "audit.training_due"
OVERDUE_DIGEST = "audit.training_overdue_digest"
NOTIFICATION_KINDS = (
    NotificationKind(REMINDER, "Training due in 30 and 7 days, due today, and overdue"),
    NotificationKind(OVERDUE_DIGEST, "Weekly count of people with overdue training",
                     roles=frozenset({Role.COMPLIANCE, Role.ADMIN})),
)


def stage(due_on: date, today: date) -> str | None:
    """The reminder a course due on ``due_on`` calls for today: "30", "7", "today", "overdue" or None."""
    days = (due_on - today).days
    if days < 0:
        return "overdue"
    if days == 0:
        return "today"
    if days <= 7:
        return "7"
    if days <= 30:
        return "30"
    return None


def _words(status: AssignmentStatus, when: str, today: date) -> Notice:
    """The reminder of one course."""
    course = status.assignment.course
    assert status.due_on is not None
    due = status.due_on.isoformat()
    if when == "overdue":
        subject, first = (f"Training overdue: {course.title}",
                          f"“{course.title}” was due on {due} and is overdue.")
    elif when == "today":
        subject, first = f"Training due today: {course.title}", f"“{course.title}” is due today ({due})."
    else:
        days = (status.due_on - today).days
        subject, first = (f"Training due in {days} days: {course.title}",
                          f"“{course.title}” is due on {due}, in {days} days.")
    return Notice(subject=subject, link_path=f"/training/assignments/{status.assignment.id}",
                  link_label="Open the course",
                  paragraphs=(first, "Complete it and record the completion in PACS Desk."))


def send_reminders(today: date | None = None) -> dict[str, Any]:
    """Remind people of due and overdue courses, and compliance officers weekly; commits."""
    today = today or local_today()
    sent: Counter[str] = Counter()
    overdue_people: set[int] = set()
    for status in _statuses(_assignments_query(), today):
        assignment = status.assignment
        when = stage(status.due_on, today) if status.due_on is not None else None
        if when is None or not assignment.course.applies_to(assignment.user):
            continue
        assert status.due_on is not None
        if when == "overdue":
            overdue_people.add(assignment.user_id)
        key = f"training:{assignment.id}:{status.due_on.isoformat()}:{when}"
        if notify(REMINDER, [assignment.user], _words(status, when, today), key=key):
            sent[when] += 1
    year, week, _ = today.isocalendar()
    if overdue_people:
        notify(OVERDUE_DIGEST, users_with_roles(Role.COMPLIANCE), Notice(
            subject=f"Overdue training: {len(overdue_people)} people",
            paragraphs=(f"As of {today.isoformat()}, {len(overdue_people)} people have at least one overdue "
                        "training course.", "The training matrix lists them by course."),
            link_path="/training?status=overdue", link_label="Open the training matrix"),
            key=f"training-overdue-week:{year}-W{week:02d}")
    db.session.commit()
    return {"reminders": dict(sent), "people_overdue": len(overdue_people)}


def reminders_job(ctx: JobContext) -> dict[str, Any]:
    """The daily ``audit.training_reminders`` job (commits)."""
    return send_reminders()
