"""The training compliance PDF: overdue courses, new hires, rates by role."""

from __future__ import annotations

import re
import textwrap
from datetime import date

import time_machine
from sqlalchemy import select

from audit.reports import services
from audit.training import bulk
from audit.training import services as training
from audit.training.completions import NewCompletion, record_completion
from audit.training.models import Course, TrainingAssignment
from core.auth.models import User
from core.extensions import db
from tests.audit.reports.conftest import local, pdf_text


def build(app, tmp_path, date_from: str, date_to: str) -> str:
    """Build the training report and return its text."""
    with app.app_context():
        pdf = services.build_from_cli(services.validate_request("training", date_from, date_to))
        db.session.commit()
    return pdf_text(pdf, tmp_path)


def test_an_overdue_course_shows_as_overdue(app, make_user, tmp_path):
    with time_machine.travel(local("2024-01-15 09:00"), tick=False):
        make_user("technician", "old.hand", full_name="Old Hand", department="PACS team")
    make_user("requester", "new.hire", full_name="New Hire", department="Radiology")
    text = build(app, tmp_path, "2024-01-01", "2024-12-31")
    overdue = text[text.index("Overdue\n"):text.index("New accounts in the period")]
    assert re.search(r"old\.hand\s+Old Hand\s+PACS team", overdue), overdue
    assert "Overdue" in overdue.split("old.hand", 1)[1]
    assert "new.hire" not in overdue
    new_hires = text[text.index("New accounts in the period"):text.index("Completions in the period")]
    assert "old.hand" in new_hires
    assert "Completion by role" in text and "Technician" in text
    roster = text[text.index("Roster: status"):]
    assert "old.hand" in roster and "new.hire" in roster


LONG_TITLE = "Radiation safety for fluoroscopy operators in the interventional suite"


def test_completions_say_who_recorded_them_with_each_attestation_once_and_full_course_names(
        app, make_user, tmp_path):
    with time_machine.travel(local("2024-01-15 09:00"), tick=False):
        for role, username in (("requester", "clerk"), ("technician", "tech"), ("compliance", "privacy")):
            make_user(role, username, department="Radiology")
    with app.app_context(), time_machine.travel(local("2024-03-01 10:00"), tick=False):
        people = {u.username: u for u in db.session.execute(select(User)).scalars()}
        course = training.create_course(training.CourseData(LONG_TITLE, "", 12, ["requester", "technician"],
                                                            30))
        own = db.session.execute(select(TrainingAssignment.id).join(TrainingAssignment.course).where(
            TrainingAssignment.user_id == people["clerk"].id, Course.code == "hipaa-privacy")).scalar_one()
        record_completion(NewCompletion(own, date(2024, 2, 28), None, True), people["clerk"], False)
        both = [people["clerk"].id, people["tech"].id]
        bulk.record_session(bulk.NewSession(course.id, date(2024, 2, 27), both, True, trainer="Dana Lee"),
                            people["privacy"])
        bulk.record_session(bulk.NewSession(course_id_of("hipaa-security"), date(2024, 2, 26), both, True),
                            people["privacy"])
        db.session.commit()
    text = build(app, tmp_path, "2024-01-01", "2024-12-31")
    assert text.count("I completed this training") == 1
    assert text.count("The trainee attested that they completed this training") == 1
    completions = text[text.index("Completions in the period"):text.index("Roster: status")]
    officer = re.search(r"\[(\d)\] The trainee attested", completions)
    trainee = re.search(r"\[(\d)\] I completed this training", completions)
    assert officer and trainee and "Recorded by" in completions
    rows = [line for line in completions.splitlines() if re.match(r"\s*2024-02-2\d", line)]
    assert len(rows) == 5
    assert all(re.search(rf"privacy\s+\[{officer[1]}\]$", line) for line in rows if "2024-02-28" not in line)
    assert re.search(rf"2024-02-28\s+clerk\s+HIPAA Privacy .* clerk \(trainee\)\s+\[{trainee[1]}\]$",
                     "\n".join(rows), re.M)
    roster = text[text.index("Roster: status"):]
    assert "…" not in roster
    for part in textwrap.wrap(LONG_TITLE, 30):
        assert re.search(rf"^\s*(clerk|tech)?\s+(Radiology)?\s+{re.escape(part)}", roster, re.M), part


def course_id_of(code: str) -> int:
    """A seeded course's id (in an app context)."""
    return db.session.execute(select(Course.id).where(Course.code == code)).scalar_one()
