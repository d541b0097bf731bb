"""One training session recorded for many attendees at once: one audited completion each, all or nothing."""

from __future__ import annotations

from datetime import date

import pytest
import time_machine
from sqlalchemy import func, select

from audit.trail.models import AuditEvent
from audit.training import services as training
from audit.training.models import TrainingAssignment, TrainingCompletion, TrainingSession
from core.auth.models import User
from core.auth.services import disable_user
from core.extensions import db
from tests.audit.compliance_fixtures import at
from tests.audit.training.test_training import assignment_of, complete, course_id, status_on


def user_id(app, username: str) -> int:
    with app.app_context():
        return db.session.execute(select(User.id).where(User.username == username)).scalar_one()


def count(app, model) -> int:
    with app.app_context():
        return db.session.execute(select(func.count()).select_from(model)).scalar_one()


def events(app, action: str) -> list[AuditEvent]:
    with app.app_context():
        return list(db.session.execute(select(AuditEvent).where(AuditEvent.action == action)).scalars())


def record_session(app, client, attendees: list[str], day: str, code: str = "hipaa-privacy", **extra):
    data = {"course_id": str(course_id(app, code)), "completed_on": day, "attested": "y",
            "attendee_ids": [str(user_id(app, name)) for name in attendees], **extra}
    return client.post("/training/sessions/new", data=data)


@pytest.fixture
def staff(make_user):
    """Three requesters, a technician and a privacy officer, all created on 1 January 2036."""
    with time_machine.travel(at(2036, 1, 1), tick=False):
        make_user("requester", "ct.ann", full_name="Ann Carter", department="CT")
        make_user("requester", "ct.bob", full_name="Bob Diaz", department="CT")
        make_user("requester", "mr.cy", full_name="Cy Evans", department="MRI")
        make_user("technician", "pacs.sam", full_name="Sam Ford", department="PACS team")
        make_user("compliance", "privacy", full_name="Pat Privacy")


def test_a_session_gives_each_attendee_an_audited_completion_in_the_trainees_words(app, client, auth, staff):
    with time_machine.travel(at(2036, 1, 10), tick=False):
        auth.login("privacy")
        form = client.get("/training/sessions/new").get_data(as_text=True)
        assert "Ann Carter" in form and "Sam Ford" in form and 'data-role="technician"' in form
        assert "The trainee attested that they completed this training" in form
        assert "I completed this training" not in form
        response = record_session(app, client, ["ct.ann", "ct.bob", "pacs.sam"], "2036-01-09",
                                  trainer="Dana Lee", notes="New-hire orientation, room 2")
        assert response.status_code == 302
        result = client.get(response.headers["Location"]).get_data(as_text=True)
        recorded = result[result.index('id="recorded"'):result.index('id="skipped-heading"')]
        assert all(name in recorded for name in ("ct.ann", "ct.bob", "pacs.sam"))
        assert "mr.cy" not in result and "Nobody was skipped" in result
        assert "Dana Lee" in result and "New-hire orientation, room 2" in result
        matrix = client.get("/training?department=CT").get_data(as_text=True)
        assert matrix.count("recorded by privacy") == 2
    with app.app_context():
        done = list(db.session.execute(select(TrainingCompletion)).scalars())
        session = db.session.execute(select(TrainingSession)).scalar_one()
        assert {c.user.username for c in done} == {"ct.ann", "ct.bob", "pacs.sam"}
        assert all(c.session_id == session.id and c.completed_on == date(2036, 1, 9) for c in done)
        assert all(c.recorded_by.username == "privacy" for c in done)
        assert all(c.attestation.startswith("The trainee attested that they completed") for c in done)
    completed = events(app, "training.completed")
    assert len(completed) == 3 and {e.username for e in completed} == {"privacy"}
    assert len(events(app, "training.session_recorded")) == 1
    assert status_on(app, "ct.ann", "hipaa-privacy", date(2036, 1, 10)) == training.Status.COMPLETE
    assert status_on(app, "mr.cy", "hipaa-privacy", date(2036, 1, 10)) == training.Status.DUE_SOON


def test_attendees_already_recorded_on_that_date_are_skipped_and_told_why(app, client, auth, staff):
    with time_machine.travel(at(2036, 1, 10), tick=False):
        auth.login("ct.ann")
        own = assignment_of(app, "ct.ann", "hipaa-privacy")
        assert complete(client, own, "2036-01-09").status_code == 302
        auth.logout()
        auth.login("privacy")
        response = record_session(app, client, ["ct.ann", "ct.bob"], "2036-01-09")
        result = client.get(response.headers["Location"]).get_data(as_text=True)
        skipped = result[result.index('id="skipped"'):]
        assert "ct.ann" in skipped and "ct.bob" not in skipped
        assert "already has a completion of HIPAA Privacy dated 2036-01-09 (recorded by ct.ann)" in skipped
        again = record_session(app, client, ["ct.ann", "ct.bob"], "2036-01-09")
        assert again.status_code == 422
        assert "Every chosen attendee already has a completion of HIPAA Privacy dated 2036-01-09" in \
            again.get_data(as_text=True)
    assert count(app, TrainingCompletion) == 2 and count(app, TrainingSession) == 1


@pytest.mark.parametrize(("change", "message"), [
    ({"completed_on": "2036-01-11"}, "cannot be in the future"),
    ({"completed_on": ""}, "Give the date of the session"),
    ({"attendee_ids": []}, "Choose at least one attendee"),
    ({"attested": ""}, "Tick the attestation"),
    ({"attendee_ids": "ghost"}, "no longer exist or were disabled"),
    ({"trainer": "x" * 201}, "Field cannot be longer than 200 characters"),
])
def test_a_refused_session_records_nothing_and_names_the_problem(app, client, auth, staff, change, message):
    with time_machine.travel(at(2036, 1, 10), tick=False):
        auth.login("privacy")
        if change.get("attendee_ids") == "ghost":
            change = {"attendee_ids": [str(user_id(app, "ct.ann")), "999999"]}
        response = record_session(app, client, ["ct.ann", "ct.bob"], "2036-01-09", **change)
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    assert count(app, TrainingCompletion) == 0 and count(app, TrainingSession) == 0
    assert events(app, "training.completed") == []


def test_disabled_accounts_are_not_offered_as_attendees(app, client, auth, staff):
    with app.app_context():
        disable_user(db.session.get(User, user_id(app, "mr.cy")))
        db.session.commit()
    with time_machine.travel(at(2036, 1, 10), tick=False):
        auth.login("privacy")
        form = client.get("/training/sessions/new").get_data(as_text=True)
        assert "Cy Evans" not in form and "Ann Carter" in form
        assert record_session(app, client, ["mr.cy"], "2036-01-09").status_code == 422
    assert count(app, TrainingCompletion) == 0


def test_a_session_may_predate_an_attendees_account_and_gives_a_missing_assignment(
        app, client, auth, make_user, staff):
    with time_machine.travel(at(2036, 1, 20), tick=False):
        make_user("requester", "late.joiner")
    with time_machine.travel(at(2036, 1, 25), tick=False):
        auth.login("privacy")
        assert record_session(app, client, ["late.joiner"], "2036-01-15").status_code == 302
        # The officer attends too, for a course their role does not require: they get an assignment.
        assert record_session(app, client, ["privacy", "ct.ann"], "2036-01-15", code="pacs-viewer"
                              ).status_code == 302
    with app.app_context():
        mine = db.session.execute(
            select(TrainingCompletion).join(TrainingAssignment)
            .where(TrainingAssignment.user_id == TrainingCompletion.recorded_by_id)).scalar_one()
        assert mine.attestation.startswith("I completed this training")
    assert status_on(app, "late.joiner", "hipaa-privacy", date(2036, 1, 25)) == training.Status.COMPLETE


def test_an_officer_may_back_load_one_completion_before_the_account_existed(app, client, auth, staff):
    with time_machine.travel(at(2036, 1, 10), tick=False):
        auth.login("privacy")
        other = assignment_of(app, "ct.ann", "hipaa-security")
        assert complete(client, other, "2035-11-02").status_code == 302
    assert count(app, TrainingCompletion) == 1


def test_only_training_managers_record_sessions(app, client, auth, staff):
    auth.login("ct.ann")
    assert client.get("/training/sessions/new").status_code == 403
    assert record_session(app, client, ["ct.ann"], "2036-01-09").status_code == 403
    assert count(app, TrainingCompletion) == 0
