"""Many completions at once: one training session for its attendees, and past completions from CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import func, or_, select

from audit.trail.chain import record
from audit.training.completions import CompletionEntry, add_completions, check_completion_date
from audit.training.models import Course, TrainingAssignment, TrainingCompletion, TrainingSession
from audit.training.services import TrainingError, assign_each, local_today
from core.auth.models import User
from core.extensions import db

# Audit actions recorded here (registered by the package's init_app).
AUDIT_ACTIONS = {"training.session_recorded": "Training session recorded for its attendees",
                 "training.imported": "Past training completions imported"}

IMPORT_COLUMNS = (("username", "the person's user name or e-mail address (the column may be called email)"),
                  ("course", "the course's code or its full title"),
                  ("completed_on", "the day the training was completed"),
                  ("notes", "optional: where, by whom, or the source of the record"))
DATE_FORMATS = ("%Y-%m-%d", "%m/%d/%Y")
DATE_FORMATS_TEXT = "YYYY-MM-DD (2024-03-31) or MM/DD/YYYY (03/31/2024)"
MAX_IMPORT_ROWS = 50_000   # a year of a large hospital's learning-system records; bigger files are split
LOOKUP_CHUNK = 500         # values per IN (...) list, well under SQLite's and PostgreSQL's bind limits
IMPORT_CHUNK = 2_000       # rows recorded per transaction by a job or command (about a second's write)
MAX_TRAINER = 200
MAX_NOTES = 2000


@dataclass(frozen=True)
class NewSession:
    """A training session as entered: one course and date for many attendees."""

    course_id: int | None
    completed_on: date | None
    attendee_ids: Sequence[int]
    attested: bool
    trainer: str = ""
    notes: str = ""


def _recorded(assignment_ids: Iterable[int]) -> dict[tuple[int, date], str]:
    """Completions already recorded for these assignments: (assignment id, day) -> who recorded it."""
    ids = sorted(set(assignment_ids))
    query = (select(TrainingCompletion.assignment_id, TrainingCompletion.completed_on, User.username)
             .join(User, User.id == TrainingCompletion.recorded_by_id))
    return {(aid, day): who for chunk in _chunks(ids)
            for aid, day, who in db.session.execute(query.where(TrainingCompletion.assignment_id.in_(chunk)))}


def _chunks(values: Sequence[Any]) -> Iterator[Sequence[Any]]:
    """``values`` in slices small enough for one IN list."""
    for start in range(0, len(values), LOOKUP_CHUNK):
        yield values[start:start + LOOKUP_CHUNK]


def _already(course: Course, day: date, recorded_by: str) -> str:
    """Why an attendee or a row gets no new completion."""
    return f"already has a completion of {course.title} dated {day.isoformat()} (recorded by {recorded_by})"


def _check_texts(trainer: str, notes: str) -> None:
    """Refuse over-long free text."""
    if len(trainer) > MAX_TRAINER:
        raise TrainingError(f"Trainer: at most {MAX_TRAINER} characters.", "trainer")
    if len(notes) > MAX_NOTES:
        raise TrainingError(f"Notes: at most {MAX_NOTES} characters.", "notes")


def record_session(new: NewSession, actor: User) -> TrainingSession:
    """One completion per attendee, each audited, all or none; attendees already recorded are skipped."""
    course = db.session.get(Course, new.course_id) if new.course_id else None
    if course is None or not course.is_active:
        raise TrainingError("Choose the course that was taught.", "course_id")
    if new.completed_on is None:
        raise TrainingError("Give the date of the session.", "completed_on")
    check_completion_date(new.completed_on)
    trainer, notes = new.trainer.strip(), new.notes.strip()
    _check_texts(trainer, notes)
    wanted = set(new.attendee_ids)
    if not wanted:
        raise TrainingError("Choose at least one attendee.", "attendee_ids")
    if not new.attested:
        raise TrainingError("Tick the attestation to confirm the attendees attested their training.",
                            "attested")
    users = list(db.session.execute(select(User).where(User.id.in_(wanted), User.is_disabled.is_(False))
                                    .order_by(User.username)).scalars())
    if len(users) != len(wanted):
        raise TrainingError("Some chosen attendees no longer exist or were disabled; reload the page.",
                            "attendee_ids")
    found = _assignments_of({(user.id, course.id) for user in users})
    made = {(a.user_id, a.course_id): a
            for a in assign_each([(user, course) for user in users if (user.id, course.id) not in found])}
    assignments = [found.get((user.id, course.id)) or made[(user.id, course.id)] for user in users]
    done = _recorded(a.id for a in assignments)
    to_record = [a for a in assignments if (a.id, new.completed_on) not in done]
    skipped = [{"user_id": a.user_id, "username": a.user.username,
                "reason": _already(course, new.completed_on, done[(a.id, new.completed_on)])}
               for a in assignments if (a.id, new.completed_on) in done]
    if not to_record:
        raise TrainingError(f"Every chosen attendee already has a completion of {course.title} dated "
                            f"{new.completed_on.isoformat()}; nothing was recorded.", "attendee_ids")
    session = TrainingSession(course_id=course.id, completed_on=new.completed_on, trainer=trainer,
                              notes=notes, skipped=skipped, recorded_by_id=actor.id)
    db.session.add(session)
    db.session.flush()
    record("training.session_recorded", object_type="training_session", object_id=session.id, user=actor,
           details={"course": course.title, "completed_on": new.completed_on.isoformat(),
                    "trainer": trainer, "attendees": [a.user.username for a in to_record],
                    "skipped": [s["username"] for s in skipped]})
    add_completions([CompletionEntry(assignment, new.completed_on) for assignment in to_record], actor,
                    session_id=session.id)
    return session


def session_completions(session_id: int) -> list[TrainingCompletion]:
    """The completions a session recorded, by attendee's user name."""
    return list(db.session.execute(
        select(TrainingCompletion).join(User, User.id == TrainingCompletion.user_id)
        .where(TrainingCompletion.session_id == session_id).order_by(User.username)).scalars())


def attendee_choices() -> list[User]:
    """Active accounts that can attend a session, by name."""
    return list(db.session.execute(select(User).where(User.is_disabled.is_(False))
                                   .order_by(func.lower(User.full_name), User.username)).scalars())


# ---------------------------------------------------------------- CSV import of past completions


@dataclass(frozen=True)
class ImportRow:
    """One checked row of a completions file."""

    row: int
    user: User
    course: Course
    completed_on: date
    notes: str
    skip_reason: str = ""


@dataclass
class ImportPlan:
    """What a file would import: rows to record and rows skipped, with their reasons."""

    rows: list[ImportRow] = field(default_factory=list)

    @property
    def to_record(self) -> list[ImportRow]:
        """Rows that become completions."""
        return [r for r in self.rows if not r.skip_reason]

    @property
    def skipped(self) -> list[ImportRow]:
        """Rows already recorded."""
        return [r for r in self.rows if r.skip_reason]


class CompletionImportError(TrainingError):
    """The file was refused; ``problems`` lists (row, column, reason); nothing was imported."""

    def __init__(self, problems: list[tuple[int, str, str]]) -> None:
        super().__init__(f"{len(problems)} problem(s) in the file; nothing was imported.", "file")
        self.problems = problems


def parse_date(text: str) -> date | None:
    """A date in one of the accepted formats, or None."""
    for fmt in DATE_FORMATS:
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    return None


def _read_rows(raw: bytes) -> tuple[str, list[tuple[int, dict[str, str]]]]:
    """The file's person column name and its data rows numbered as a spreadsheet shows them."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise CompletionImportError([(1, "file", "the file is not UTF-8 text; save it as CSV UTF-8")]
                                    ) from None
    reader = csv.reader(io.StringIO(text))
    header = [h.strip().lower() for h in next(reader, [])]
    problems: list[tuple[int, str, str]] = []
    person = "email" if "email" in header and "username" not in header else "username"
    known = {person, "course", "completed_on", "notes"}
    for name in ("course", "completed_on"):
        if name not in header:
            problems.append((1, name, "this column is missing from the header row"))
    if person not in header:
        problems.append((1, "username", "the header row needs a username (or email) column"))
    unknown = [h for h in header if h not in known]
    if unknown:
        problems.append((1, ", ".join(unknown), "unknown column(s); expected username (or email), course, "
                                                "completed_on, notes"))
    if problems:
        raise CompletionImportError(problems)
    rows = [(number, dict(zip(header, (v.strip() for v in values), strict=False)))
            for number, values in enumerate(reader, start=2) if any(v.strip() for v in values)]
    if not rows:
        raise CompletionImportError([(2, "file", "the file has no rows under its header")])
    if len(rows) > MAX_IMPORT_ROWS:
        raise CompletionImportError([(MAX_IMPORT_ROWS + 2, "file", f"more than {MAX_IMPORT_ROWS:,} rows; "
                                                                   "split the file and import each part")])
    return person, rows


def _lookups(rows: list[tuple[int, dict[str, str]]], person: str
             ) -> tuple[dict[str, User], dict[str, Course]]:
    """Users by lower-cased user name and e-mail, courses by lower-cased code and title, a few queries."""
    names = sorted({r.get(person, "").lower() for _, r in rows} - {""})
    users: dict[str, User] = {}
    for chunk in _chunks(names):
        for user in db.session.execute(select(User).where(or_(func.lower(User.username).in_(chunk),
                                                               func.lower(User.email).in_(chunk)))).scalars():
            users[user.username.lower()] = user
            if user.email:
                users.setdefault(user.email.lower(), user)
    courses: dict[str, Course] = {}
    for course in db.session.execute(select(Course)).scalars():
        courses[course.code.lower()] = course
        courses.setdefault(" ".join(course.title.lower().split()), course)
    return users, courses


def plan_import(raw: bytes) -> ImportPlan:
    """Check every row of a completions file; raises with every problem, naming the row and column."""
    person, rows = _read_rows(raw)
    users, courses = _lookups(rows, person)
    today = local_today()
    problems: list[tuple[int, str, str]] = []
    checked: list[tuple[int, User, Course, date, str]] = []
    seen: dict[tuple[int, int, date], int] = {}
    for number, values in rows:
        before = len(problems)
        who, title = values.get(person, ""), values.get("course", "")
        when, notes = values.get("completed_on", ""), values.get("notes") or ""
        user = users.get(who.lower())
        course = courses.get(" ".join(title.lower().split()))
        day = parse_date(when)
        if not who:
            problems.append((number, person, "empty; give the user name or e-mail address"))
        elif user is None:
            problems.append((number, person, f"no account {who!r}"))
        if not title:
            problems.append((number, "course", "empty; give the course code or full title"))
        elif course is None:
            problems.append((number, "course", f"no course with the code or title {title!r}"))
        if day is None:
            problems.append((number, "completed_on", f"{when!r} is not a date in the form {DATE_FORMATS_TEXT}"
                             if when else f"empty; give the date as {DATE_FORMATS_TEXT}"))
        elif day > today:
            problems.append((number, "completed_on", f"{day.isoformat()} is in the future"))
        if len(notes) > MAX_NOTES:
            problems.append((number, "notes", f"longer than {MAX_NOTES} characters"))
        if len(problems) > before or user is None or course is None or day is None:
            continue
        first = seen.setdefault((user.id, course.id, day), number)
        if first != number:
            problems.append((number, "", f"the same person, course and date as row {first}"))
            continue
        checked.append((number, user, course, day, notes))
    if problems:
        raise CompletionImportError(problems)
    assignments = _assignments_of({(u.id, c.id) for _, u, c, _, _ in checked})
    done = _recorded(a.id for a in assignments.values())
    plan = ImportPlan()
    for number, user, course, day, notes in checked:
        assignment = assignments.get((user.id, course.id))
        prior = done.get((assignment.id, day)) if assignment is not None else None
        plan.rows.append(ImportRow(number, user, course, day, notes,
                                   _already(course, day, prior) if prior else ""))
    return plan


def _assignments_of(pairs: set[tuple[int, int]]) -> dict[tuple[int, int], TrainingAssignment]:
    """Existing assignments for these (user id, course id) pairs, in a few queries for any number."""
    query = select(TrainingAssignment)
    return {(a.user_id, a.course_id): a for chunk in _chunks(sorted({u for u, _ in pairs}))
            for a in db.session.execute(query.where(TrainingAssignment.user_id.in_(chunk))).scalars()
            if (a.user_id, a.course_id) in pairs}


def import_completions(raw: bytes, actor: User, source: str,
                       between: Callable[[int, int], None] | None = None) -> ImportPlan:
    """Check the whole file, then record every new row, each audited; nothing if any row is bad.

    With ``between``, the rows are recorded IMPORT_CHUNK at a time and ``between(recorded, total)``
    runs after each part but the last: a job or command commits there, so no other writer waits
    for the whole file, and a run stopped part-way can be repeated (what it recorded is skipped).
    Without it, the import is one transaction.
    """
    plan = plan_import(raw)
    if not plan.to_record:
        raise CompletionImportError([(r.row, "", r.skip_reason) for r in plan.skipped])
    rows = plan.to_record
    assignments = _assignments_of({(r.user.id, r.course.id) for r in rows})
    step = IMPORT_CHUNK if between is not None else len(rows)
    recorded: list[int] = []
    for start in range(0, len(rows), step):
        if between is not None and start:
            between(len(recorded), len(rows))
        part = rows[start:start + step]
        missing = {(r.user.id, r.course.id): (r.user, r.course) for r in part
                   if (r.user.id, r.course.id) not in assignments}
        assignments.update({(a.user_id, a.course_id): a for a in assign_each(list(missing.values()))})
        entries = [CompletionEntry(assignments[(r.user.id, r.course.id)], r.completed_on, r.notes)
                   for r in part]
        recorded += [completion.id for completion in add_completions(entries, actor)]
    record("training.imported", object_type="training_completion", user=actor, covers=recorded,
           details={"source": source, "rows": len(plan.rows), "recorded": len(recorded),
                    "skipped": [f"row {r.row}: {r.user.username}" for r in plan.skipped]})
    return plan

