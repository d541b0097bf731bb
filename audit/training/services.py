"""Training services: seeded courses, lazy assignment sync, and per-assignment status."""

from __future__ import annotations

import csv
import io
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum
from functools import cache
from typing import Any

from sqlalchemy import Select, and_, bindparam, exists, func, insert, select
from sqlalchemy.orm import aliased, contains_eager, selectinload

from audit.retention.engine import add_months_to_date
from audit.trail.chain import record, record_each
from audit.trail.search import safe_cell
from audit.training.models import Course, TrainingAssignment, TrainingCompletion
from core.auth.models import Role, User
from core.extensions import db
from core.forms import FieldError
from core.timeutil import format_local, to_local, utcnow

DUE_SOON_DAYS = 30
ATTESTATION = ("I completed this training and understand my obligations under it, including the "
               "protection of patient information.")
# What an officer recording someone else's completion confirms: the trainee's word, not their own.
OFFICER_ATTESTATION = ("The trainee attested that they completed this training and understand their "
                       "obligations under it, including the protection of patient information.")

# Audit actions recorded here (registered by the package's init_app).
AUDIT_ACTIONS = {
    "training.course_created": "Training course created",
    "training.course_updated": "Training course changed",
    "training.assigned": "Training assigned",
    "training.exported": "Training matrix exported",
}

# code, title, description, recurrence in months (None: once), roles (empty: everyone), days to complete
SEED_COURSES: tuple[tuple[str, str, str, int | None, list[str], int], ...] = (
    ("hipaa-privacy", "HIPAA Privacy", "The Privacy Rule: minimum necessary use of patient "
     "information, patients' rights, and reporting a privacy incident.", 12, [], 30),
    ("hipaa-security", "HIPAA Security Awareness", "Security reminders, protection from malicious "
     "software, log-in monitoring and password management (45 CFR 164.308(a)(5)).", 12, [], 30),
    ("pacs-viewer", "PACS viewer and workflow training", "Using the PACS viewer and the imaging "
     "workflow: worklists, hanging protocols, study routing and downtime procedures.", None,
     ["requester", "technician"], 60),
    ("break-the-glass", 'Emergency "break-the-glass" access procedure', "When and how to use "
     "emergency access to patient images, and the review that follows every use.", 12,
     ["admin", "requester", "technician"], 30),
)


class TrainingError(FieldError):
    """A training operation was refused; ``field`` names the form field at fault."""


class Status(StrEnum):
    """Where an assignment stands today."""

    COMPLETE = "complete"
    PENDING = "pending"
    DUE_SOON = "due_soon"
    OVERDUE = "overdue"
    EXPIRED = "expired"

    @property
    def label(self) -> str:
        """Human-readable status."""
        return {"complete": "Complete", "pending": "Not yet due", "due_soon": "Due soon",
                "overdue": "Overdue", "expired": "Expired"}[self.value]

    @property
    def css(self) -> str:
        """Bootstrap colour for the status badge."""
        return {"complete": "success", "pending": "secondary", "due_soon": "warning",
                "overdue": "danger", "expired": "danger"}[self.value]


@dataclass(frozen=True)
class AssignmentStatus:
    """An assignment with its latest completion and what that means today."""

    assignment: TrainingAssignment
    latest: TrainingCompletion | None
    status: Status
    due_on: date | None           # when it is (next) due; None for a completed one-time course

    @property
    def needs_action(self) -> bool:
        """Overdue or expired."""
        return self.status in (Status.OVERDUE, Status.EXPIRED)


def local_today() -> date:
    """Today's date in the configured time zone."""
    return to_local(utcnow()).date()


def _standing(recurrence_months: int | None, first_due: date, completed_on: date | None,
              today: date) -> tuple[Status, date | None]:
    """The status on ``today`` and the (next) due date, from the latest completion's date."""
    if completed_on is not None:
        if not recurrence_months:
            return Status.COMPLETE, None
        due = add_months_to_date(completed_on, recurrence_months)
        if today > due:
            return Status.EXPIRED, due
        return (Status.DUE_SOON if (due - today).days <= DUE_SOON_DAYS else Status.COMPLETE), due
    if today > first_due:
        return Status.OVERDUE, first_due
    return (Status.DUE_SOON if (first_due - today).days <= DUE_SOON_DAYS else Status.PENDING), first_due


def status_of(course: Course, assignment: TrainingAssignment, latest: TrainingCompletion | None,
              today: date) -> AssignmentStatus:
    """Complete, due soon, overdue, expired or not yet due, on ``today``."""
    status, due = _standing(course.recurrence_months, assignment.due_on,
                            latest.completed_on if latest else None, today)
    return AssignmentStatus(assignment, latest, status, due)


@cache
def _standings() -> Select[*tuple[Any, ...]]:
    """Active users' assignments of active courses with what their standing needs, as plain columns.

    Each assignment's latest completion is read through the (assignment, date) index, so one
    user's rows cost the same however many completions the whole workforce has; built once.
    """
    done = (select(func.max(TrainingCompletion.completed_on))
            .where(TrainingCompletion.assignment_id == TrainingAssignment.id).scalar_subquery())
    return (select(TrainingAssignment.user_id, TrainingAssignment.due_on, Course.recurrence_months,
                   Course.required_roles, User.role, done.label("done"), Course.title)
            .join(User, User.id == TrainingAssignment.user_id)
            .join(Course, Course.id == TrainingAssignment.course_id)
            .where(User.is_disabled.is_(False), Course.is_active.is_(True)))


@cache
def _standings_of_one() -> Select[*tuple[Any, ...]]:
    """``_standings`` of the user bound as ``user_id``, by course title (the banner on every page)."""
    return _standings().where(TrainingAssignment.user_id == bindparam("user_id")).order_by(Course.title)


def _late(rows: Iterable[Any], today: date) -> list[tuple[int, str]]:
    """(user id, course title) of the ``_standings`` rows that are overdue or expired on ``today``."""
    return [(user_id, title) for user_id, due_on, months, roles, role, done, title in rows
            if (not roles or role in roles)
            and _standing(months, due_on, done, today)[0] in (Status.OVERDUE, Status.EXPIRED)]


def overdue_counts(today: date | None = None) -> tuple[int, int]:
    """Overdue or expired assignments and the people who have one, in one query and no matrix."""
    late = _late(db.session.execute(_standings()), today or local_today())
    return len(late), len({user_id for user_id, _ in late})


def overdue_titles(user_id: int, today: date | None = None) -> list[str]:
    """The titles of a user's overdue or expired courses, in one query (the banner on every page)."""
    rows = db.session.execute(_standings_of_one(), {"user_id": user_id})
    return [title for _, title in _late(rows, today or local_today())]


# ---------------------------------------------------------------- courses


def seed_courses() -> None:
    """Create the standard courses if missing (reference data; flushes, each audited)."""
    for code, title, description, months, roles, days in SEED_COURSES:
        if db.session.execute(select(Course.id).where(Course.code == code)).first() is None:
            course = Course(code=code, title=title, description=description, recurrence_months=months,
                            required_roles=roles, days_to_complete=days)
            db.session.add(course)
            db.session.flush()
            record("training.course_created", object_type="training_course", object_id=course.id,
                   user=None, details={**_course_state(course), "standard": True})


@dataclass(frozen=True)
class CourseData:
    """What a course is made of, from the form."""

    title: str
    description: str
    recurrence_months: int | None
    required_roles: Sequence[str]
    days_to_complete: int
    is_active: bool = True


def _check_course(data: CourseData) -> None:
    """Refuse nonsense course values."""
    if not data.title.strip():
        raise TrainingError("Give the course a title.", "title")
    if data.recurrence_months is not None and not 1 <= data.recurrence_months <= 120:
        raise TrainingError("Recurrence: between 1 and 120 months, or one-time.", "recurrence_months")
    if not 0 <= data.days_to_complete <= 365:
        raise TrainingError("Days to complete: between 0 and 365.", "days_to_complete")
    for role in data.required_roles:
        if role not in {r.value for r in Role}:
            raise TrainingError(f"Unknown role {role!r}.", "required_roles")


def _course_state(course: Course) -> dict[str, Any]:
    """A course as plain values for its audit events."""
    return {"title": course.title, "recurrence_months": course.recurrence_months,
            "required_roles": course.roles, "days_to_complete": course.days_to_complete,
            "is_active": course.is_active}


def create_course(data: CourseData) -> Course:
    """Add a course; current users who must take it get assignments on the next sync."""
    _check_course(data)
    title = data.title.strip()
    if db.session.execute(select(Course.id).where(func.lower(Course.title) == title.lower())).first():
        raise TrainingError(f"A course called '{title}' already exists.", "title")
    code = "c-" + secrets.token_hex(4)
    course = Course(code=code, title=title, description=data.description.strip(),
                    recurrence_months=data.recurrence_months,
                    required_roles=sorted(set(data.required_roles)),
                    days_to_complete=data.days_to_complete, is_active=data.is_active,
                    available_from=utcnow())
    db.session.add(course)
    db.session.flush()
    record("training.course_created", object_type="training_course", object_id=course.id,
           details=_course_state(course))
    return course


def update_course(course_id: int, data: CourseData) -> Course:
    """Change a course (flushes and audits)."""
    _check_course(data)
    course = db.session.get(Course, course_id)
    if course is None:
        raise TrainingError("There is no such course.")
    old = _course_state(course)
    course.title = data.title.strip()
    course.description = data.description.strip()
    course.recurrence_months = data.recurrence_months
    course.required_roles = sorted(set(data.required_roles))
    course.days_to_complete = data.days_to_complete
    course.is_active = data.is_active
    db.session.flush()
    new = _course_state(course)
    if new != old:
        record("training.course_updated", object_type="training_course", object_id=course.id,
               details={"old": old, "new": new})
    return course


def list_courses(active_only: bool = False) -> list[Course]:
    """Courses by title."""
    query = select(Course).order_by(Course.title)
    if active_only:
        query = query.where(Course.is_active.is_(True))
    return list(db.session.execute(query).scalars())


# ---------------------------------------------------------------- assignments


def _first_due(user: User, course: Course) -> date:
    """When a user first has to complete a course: from their start, or the course's."""
    start = user.created_at
    if course.available_from is not None and course.available_from > start:
        start = course.available_from
    return to_local(start).date() + timedelta(days=course.days_to_complete)


def _missing(users: Sequence[User], courses: Sequence[Course]) -> list[tuple[User, Course]]:
    """Pairs of user and course that should have an assignment and do not."""
    query = select(TrainingAssignment.user_id, TrainingAssignment.course_id)
    if len(users) == 1:
        query = query.where(TrainingAssignment.user_id == users[0].id)
    have = set(db.session.execute(query).all())
    return [(u, c) for u in users for c in courses if c.applies_to(u) and (u.id, c.id) not in have]


def ensure_assignments() -> int:
    """Give every active user an assignment for each course they must take (flushes, each audited)."""
    users = list(db.session.execute(select(User).where(User.is_disabled.is_(False))).scalars())
    return len(assign_each(_missing(users, list_courses(active_only=True))))


def assign_new_user(user: User) -> None:
    """Hook for account creation: the new user's assignments, each audited, in the same transaction."""
    assign_each(_missing([user], list_courses(active_only=True)))


def assign_each(pairs: Sequence[tuple[User, Course]]) -> list[TrainingAssignment]:
    """Assign each (user, course) with its first due date, each audited, in one insert (flushes)."""
    if not pairs:
        return []
    now = utcnow()
    made = list(db.session.scalars(
        insert(TrainingAssignment).returning(TrainingAssignment, sort_by_parameter_order=True),
        [{"user_id": user.id, "course_id": course.id, "assigned_at": now, "due_on": _first_due(user, course)}
         for user, course in pairs]))
    record_each("training.assigned", "training_assignment", [
        (assignment.id, {"username": user.username, "course": course.title,
                         "due_on": assignment.due_on.isoformat()})
        for assignment, (user, course) in zip(made, pairs, strict=True)])
    return made


def _statuses(query: Any, today: date) -> list[AssignmentStatus]:
    """Statuses of the assignments ``query`` selects, with one query for latest completions."""
    rows = list(db.session.execute(query).scalars())
    if not rows:
        return []
    later = aliased(TrainingCompletion)
    latest_query = select(TrainingCompletion).options(selectinload(TrainingCompletion.recorded_by)).where(
        TrainingCompletion.assignment_id.in_([a.id for a in rows]),
        ~exists().where(and_(
            later.assignment_id == TrainingCompletion.assignment_id,
            (later.completed_on > TrainingCompletion.completed_on)
            | ((later.completed_on == TrainingCompletion.completed_on) & (later.id > TrainingCompletion.id)),
        )))
    latest = {c.assignment_id: c for c in db.session.execute(latest_query).scalars()}
    return [status_of(a.course, a, latest.get(a.id), today) for a in rows]


def _assignments_query() -> Any:
    """Assignments of active users for active courses (role fit is checked per row)."""
    return (select(TrainingAssignment).join(TrainingAssignment.user).join(TrainingAssignment.course)
            .options(contains_eager(TrainingAssignment.user), contains_eager(TrainingAssignment.course))
            .where(User.is_disabled.is_(False), Course.is_active.is_(True))
            .order_by(Course.title))


def user_statuses(user_id: int, today: date | None = None) -> list[AssignmentStatus]:
    """A user's required courses with their status."""
    query = _assignments_query().where(TrainingAssignment.user_id == user_id)
    return [s for s in _statuses(query, today or local_today())
            if s.assignment.course.applies_to(s.assignment.user)]


@dataclass(frozen=True)
class MatrixFilter:
    """Which users and statuses the compliance matrix shows."""

    role: str = ""
    department: str = ""
    status: str = ""


def matrix(flt: MatrixFilter, today: date | None = None
           ) -> tuple[list[Course], list[tuple[User, dict[int, AssignmentStatus]]]]:
    """Users by courses with status, filtered by role, department and status."""
    courses = list_courses(active_only=True)
    query = _assignments_query().order_by(User.username)
    if flt.role:
        query = query.where(User.role == flt.role)
    if flt.department:
        query = query.where(User.department == flt.department)
    by_user: dict[int, tuple[User, dict[int, AssignmentStatus]]] = {}
    for status in _statuses(query, today or local_today()):
        user = status.assignment.user
        if not status.assignment.course.applies_to(user):
            continue
        by_user.setdefault(user.id, (user, {}))[1][status.assignment.course_id] = status
    rows = sorted(by_user.values(), key=lambda pair: pair[0].username)
    if flt.status:
        rows = [r for r in rows if any(s.status.value == flt.status for s in r[1].values())]
    return courses, rows


MATRIX_CSV_HEADER = ["username", "full_name", "role", "department", "course", "status", "due_on",
                     "last_completed_on", "score", "attested_at_local", "recorded_by"]


def export_matrix(flt: MatrixFilter) -> str:
    """The filtered matrix as CSV, one row per user and course; the export is audited."""
    _courses, rows = matrix(flt)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(MATRIX_CSV_HEADER)
    count = 0
    for user, cells in rows:
        for status in sorted(cells.values(), key=lambda s: s.assignment.course.title):
            latest = status.latest
            writer.writerow([safe_cell(v) for v in (
                user.username, user.full_name, user.role, user.department, status.assignment.course.title,
                status.status.label, status.due_on.isoformat() if status.due_on else "",
                latest.completed_on.isoformat() if latest else "", latest.score if latest else "",
                format_local(latest.attested_at) if latest else "",
                latest.recorded_by.username if latest else "")])
            count += 1
    record("training.exported", object_type="training_matrix",
           details={"rows": count, "role": flt.role, "department": flt.department, "status": flt.status})
    return buffer.getvalue()


def departments() -> list[str]:
    """Departments of active users, for filters."""
    return [d for (d,) in db.session.execute(
        select(User.department).where(User.department != "").distinct().order_by(User.department))]
