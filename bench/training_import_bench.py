"""Training import benchmark: a 50,000-row completions file, and how long other writers wait for it.

Builds 2,000 people and 25 courses (no assignments yet, the worst case: every row also makes
its assignment), then imports a file of one completion per person and course as the web page
does with a large file: through the import job (check every row, then write the assignments,
the completions and an audit event for each, committing part by part). Beside it, in
the same run, the same rows are inserted plainly, with nothing checked, sealed or chained:
the import's write phase is compared with that baseline. While the import runs, another writer
records an audit event every 0.2 s, as a help desk page saving a ticket would; its longest wait
is what a user saving a change during the import waits.

    python bench/training_import_bench.py                      # temporary SQLite file
    python bench/training_import_bench.py --database-url postgresql://user@host/db

On PostgreSQL the benchmark works in a scratch schema that it drops afterwards.
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
from datetime import date, timedelta

import benchlib  # first: it puts the project on sys.path

from audit.trail.chain import verify_chain
from audit.trail.models import AuditEvent
from audit.training.jobs import IMPORT_JOB
from audit.training.models import Course, TrainingAssignment, TrainingCompletion
from core.auth.models import AuthSource, Role, User
from core.extensions import db
from core.forms import carry_file
from core.jobs.models import Job
from core.jobs.queue import enqueue
from core.jobs.worker import work_until_idle
from core.timeutil import utcnow

PEOPLE, COURSES = 2_000, 25
WRITE_RATIO_TARGET = 15.0  # the import's write phase against plain inserts of the same rows
OTHER_WRITER_PAUSE_S = 0.2


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="sqlite:///file.db or postgresql://... "
                        "(default: a temporary SQLite file)")
    parser.add_argument("--people", type=int, default=PEOPLE, help=f"people (default {PEOPLE:,}); "
                        f"the file has one row per person and each of {COURSES} courses")
    return parser.parse_args()


def load_people_and_courses(people: int) -> None:
    """People and courses, loaded as a restore would (no assignments, no events)."""
    now = utcnow()
    benchlib.bulk_insert(User, [{"username": f"user{i}", "full_name": f"User {i}", "department": "Radiology",
                                 "email": f"user{i}@hospital.example", "password_hash": "-",
                                 "role": Role.COMPLIANCE if i == 0 else Role.REQUESTER,
                                 "auth_source": AuthSource.LOCAL, "is_disabled": False, "created_at": now,
                                 "failed_login_count": 0, "session_version": 1, "must_change_password": False}
                                for i in range(people + 1)])
    everyone = "[]" if db.engine.dialect.name == "postgresql" else []  # COPY takes the JSON text
    benchlib.bulk_insert(Course, [{"code": f"C{c}", "title": f"Course {c}", "description": "",
                                   "required_roles": everyone, "days_to_complete": 30, "is_active": True,
                                   "created_at": now} for c in range(COURSES)])
    db.session.commit()


def completions_file(people: int) -> bytes:
    """One row per person and course, dated in the past year."""
    out = io.StringIO()
    out.write("username,course,completed_on,notes\n")
    first = date.today() - timedelta(days=360)
    for person in range(1, people + 1):
        for course in range(COURSES):
            day = first + timedelta(days=(person + course) % 350)
            out.write(f"user{person},C{course},{day},LMS export\n")
    return out.getvalue().encode()


def plain_inserts(rows: int) -> float:
    """Seconds to insert the import's rows plainly: the assignments, the completions, two events each."""
    now, today = utcnow(), date.today()
    assignment = benchlib.plain_copy(TrainingAssignment, "bench_plain_assignment")
    completion = benchlib.plain_copy(TrainingCompletion, "bench_plain_completion")
    event = benchlib.plain_copy(AuditEvent, "bench_plain_event")
    started = time.perf_counter()
    connection = db.session.connection()
    connection.execute(assignment.insert(), [{"id": i, "user_id": i, "course_id": 1, "assigned_at": now,
                                              "due_on": today} for i in range(rows)])
    connection.execute(completion.insert(), [
        {"id": i, "assignment_id": i, "user_id": i, "course_id": 1, "completed_on": today,
         "attestation": "-", "attested_at": now, "recorded_by_id": 1, "recorded_at": now,
         "notes": "LMS export"} for i in range(rows)])
    connection.execute(event.insert(), [
        {"seq": i, "occurred_at": now, "user_id": 1, "username": "user0", "action": "training.completed",
         "object_type": "training_completion", "object_id": str(i), "outcome": "success",
         "details": '{"completed_on":"2026-01-01","course":"Course 1","username":"user1"}',
         "prev_hash": "0" * 64, "hash": "1" * 64, "key_id": 1} for i in range(2 * rows)])
    db.session.commit()
    return time.perf_counter() - started


def run(url: str, schema: str | None, people: int) -> bool:
    """Measure and print; True when the targets are met."""
    with tempfile.TemporaryDirectory() as instance:
        app = benchlib.make_app(url, instance, schema)
        with app.app_context():
            db.create_all()
            load_people_and_courses(people)
            raw = completions_file(people)
            rows = people * COURSES
            plain = plain_inserts(rows)
            actor = db.session.get(User, 1)
            writer = benchlib.OtherWriter(app, OTHER_WRITER_PAUSE_S)
            writer.start()
            time.sleep(1)
            started = time.perf_counter()
            enqueue(IMPORT_JOB, {"data": carry_file(raw), "source": "bench"}, user_id=actor.id)
            db.session.commit()
            [(job_id, status)] = work_until_idle(app, [IMPORT_JOB])
            elapsed = time.perf_counter() - started
            job = db.session.get(Job, job_id)
            result = (job.result if job else None) or {}
            if status.value != "done":
                print(f"the import job ended {status.value}: {job.error if job else ''}")
            time.sleep(1)
            writer.stop.set()
            writer.join()
            imported = int(result.get("imported", 0))
            events = imported * 2 + 1
            intact = verify_chain().ok
            print(f"database:               {db.engine.dialect.name}")
            print(f"file:                   {rows:,} rows ({people:,} people x {COURSES} courses, "
                  f"none assigned yet)")
            print(f"import job:             {elapsed:8.2f} s  ({status.value}: {imported:,} assignments, "
                  f"{imported:,} completions, {events:,} audit events; chain intact={intact})")
            print(f"plain inserts, same rows: {plain:6.2f} s  (nothing checked, sealed or chained)")
            ratio = elapsed / plain
            print(f"ratio import/plain:     {ratio:8.1f}   (target <= {WRITE_RATIO_TARGET:.0f})")
            print(f"another writer:         longest wait {max(writer.waits):.2f} s over {len(writer.waits)} "
                  f"writes, {len(writer.errors)} failed ({', '.join(sorted(set(writer.errors))) or 'none'})")
            print(f"load average:           {' '.join(f'{x:.1f}' for x in os.getloadavg())} "
                  f"on {os.cpu_count()} CPUs")
            db.session.remove()
            db.engine.dispose()
    met = intact and imported == rows and ratio <= WRITE_RATIO_TARGET and not writer.errors
    print("targets:                " + ("met" if met else "MISSED"))
    return met


def main() -> int:
    """Entry point; exit status 1 when a target is missed."""
    args = parse_args()
    with benchlib.scratch_database(args.database_url, "training_import_bench") as (url, schema):
        return 0 if run(url, schema, args.people) else 1


if __name__ == "__main__":
    raise SystemExit(main())
