"""The training compliance report: roster, status per course, overdue list, rates."""

from __future__ import annotations

import textwrap
from collections import defaultdict
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import aliased

from audit.reports.registry import (
    Progress,
    ReportContent,
    ReportKind,
    ReportRequest,
)
from audit.reports.services import period_text
from audit.training.models import Course, TrainingCompletion
from audit.training.services import MatrixFilter, Status, local_today, matrix
from core.auth.models import Role, User
from core.auth.permissions import Permission
from core.extensions import db
from core.pdf import text_columns
from core.timeutil import format_local

DONE = (Status.COMPLETE, Status.DUE_SOON)
LATE = (Status.OVERDUE, Status.EXPIRED)
ROSTER_COLUMNS = (("User", 16), ("Department", 16), ("Course", 32), ("Status", 16), ("Due", 16),
                  ("Completed", 16), ("Attested", 16))
COURSE_WIDTH = 30  # the roster's course column less the gap before the next column


def _roster_lines(username: str, department: str, course: str,
                  rest: tuple[str, ...]) -> list[tuple[str, ...]]:
    """One roster row, its course name wrapped at word boundaries onto continuation lines."""
    parts = textwrap.wrap(course, COURSE_WIDTH) or [""]
    return [(username, department, parts[0], *rest),
            *(("", "", part, *("" for _ in rest)) for part in parts[1:])]


def _day(value: date | None) -> str:
    """A date as printed."""
    return value.isoformat() if value else ""


def _rates(groups: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Completion counts and rate per group of statuses."""
    rows = []
    for name, statuses in sorted(groups.items()):
        done = sum(1 for s in statuses if s.status in DONE)
        late = sum(1 for s in statuses if s.status in LATE)
        people = len({s.assignment.user_id for s in statuses})
        rows.append({"name": name or "(none)", "people": people, "assignments": len(statuses),
                     "done": done, "late": late, "pending": len(statuses) - done - late,
                     "rate": 100.0 * done / len(statuses) if statuses else 0.0})
    return rows


def build_training(request: ReportRequest, progress: Progress) -> ReportContent:
    """Status of every active user's required courses today, and completions in the period."""
    assert request.start is not None and request.end is not None
    today = local_today()
    progress(10, "Training roster")
    courses, rows = matrix(MatrixFilter(), today)
    statuses = [s for _, per_course in rows for s in per_course.values()]
    by_role: dict[str, list[Any]] = defaultdict(list)
    by_department: dict[str, list[Any]] = defaultdict(list)
    by_course: dict[str, list[Any]] = defaultdict(list)
    for s in statuses:
        user = s.assignment.user
        by_role[Role(user.role).label].append(s)
        by_department[user.department].append(s)
        by_course[s.assignment.course.title].append(s)
    late = sorted((s for s in statuses if s.status in LATE),
                  key=lambda s: (s.due_on or today, s.assignment.user.username))
    progress(40, "New hires and completions")
    new_hires = []
    for user, per_course in rows:
        local_start = format_local(user.created_at, "%Y-%m-%d")
        if request.start.isoformat() <= local_start <= request.end.isoformat():
            missing = [s.assignment.course.title for s in per_course.values() if s.status not in DONE]
            if missing:
                new_hires.append({"user": user, "started": local_start, "missing": missing})
    recorder = aliased(User)
    completions = list(db.session.execute(
        select(TrainingCompletion, User.username, User.full_name, Course.title, recorder.username)
        .join(User, User.id == TrainingCompletion.user_id)
        .join(Course, Course.id == TrainingCompletion.course_id)
        .join(recorder, recorder.id == TrainingCompletion.recorded_by_id)
        .where(TrainingCompletion.completed_on >= request.start,
               TrainingCompletion.completed_on <= request.end)
        .order_by(TrainingCompletion.completed_on, User.username)))
    # Each attestation text is printed once, above the table; rows refer to it by number.
    statements: dict[str, int] = {}
    for completion, *_ in completions:
        statements.setdefault(completion.attestation, len(statements) + 1)
    roster_lines = []
    for user, per_course in rows:
        for s in sorted(per_course.values(), key=lambda s: s.assignment.course.title):
            latest = s.latest
            roster_lines += _roster_lines(user.username, user.department, s.assignment.course.title, (
                s.status.label, _day(s.due_on), _day(latest.completed_on) if latest else "",
                format_local(latest.attested_at, "%Y-%m-%d") if latest else ""))
    progress(60, "Rates by role and department")
    done = sum(1 for s in statuses if s.status in DONE)
    context = {
        "today": today, "courses": courses, "people": len(rows), "assignments": len(statuses),
        "done": done, "late_count": len(late),
        "rate": 100.0 * done / len(statuses) if statuses else 0.0,
        "by_role": _rates(by_role), "by_department": _rates(by_department),
        "by_course": _rates(by_course), "late": late, "new_hires": new_hires,
        "completions": completions, "statements": statements,
        "roster": text_columns(ROSTER_COLUMNS, roster_lines, per_page=25, first_page=25,
                               page_breaks=False),
        "format_local": format_local,
    }
    return ReportContent("training.html", context, period_text(request.start, request.end))


REPORT_KIND = ReportKind(
    key="training", title="Training compliance report",
    description="The workforce roster with each person's status per course, the overdue list, "
                "new hires not yet trained, completions in the period and rates by role and department.",
    permission=Permission.REPORT_COMPLIANCE, build=build_training, order=20,
)
