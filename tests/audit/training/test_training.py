"""Training: seeded courses, assignments for every user (new ones too), completions, status over time."""

from __future__ import annotations

import csv
import io
import re
from datetime import date

import pytest
import time_machine
from sqlalchemy import func, select

from audit.retention import engine as retention
from audit.trail.models import AuditEvent
from audit.training import services as training
from audit.training.models import Course, TrainingAssignment, TrainingCompletion
from core.auth.models import User
from core.extensions import db
from tests.audit.compliance_fixtures import at
from tests.conftest import PASSWORD

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32


def course_id(app, code: str) -> int:
    with app.app_context():
        return db.session.execute(select(Course.id).where(Course.code == code)).scalar_one()


def assignment_of(app, username: str, code: str) -> int:
    with app.app_context():
        return db.session.execute(
            select(TrainingAssignment.id).join(TrainingAssignment.user).join(TrainingAssignment.course)
            .where(User.username == username, Course.code == code)).scalar_one()


def status_on(app, username: str, code: str, day: date) -> training.Status:
    with app.app_context():
        user_id = db.session.execute(select(User.id).where(User.username == username)).scalar_one()
        found = [s for s in training.user_statuses(user_id, day) if s.assignment.course.code == code]
        return found[0].status


def complete(client, assignment_id: int, day: str, **extra):
    data = {"completed_on": day, "attested": "y", **extra}
    return client.post(f"/training/assignments/{assignment_id}", data=data,
                       content_type="multipart/form-data")


def test_seeded_courses_with_their_recurrence(app):
    with app.app_context():
        courses = {c.code: c for c in training.list_courses()}
    assert courses["hipaa-privacy"].recurrence_text == "Annual"
    assert courses["hipaa-security"].recurrence_text == "Annual"
    assert courses["pacs-viewer"].recurrence_text == "One-time"
    assert courses["break-the-glass"].title == 'Emergency "break-the-glass" access procedure'


def test_new_users_get_assignments_for_their_role_at_once(app, make_user):
    with time_machine.travel(at(2036, 1, 1), tick=False):
        make_user("requester", "clerk")
        make_user("compliance", "privacy")
    with app.app_context():
        pairs = db.session.execute(
            select(User.username, Course.code, TrainingAssignment.due_on)
            .join(TrainingAssignment.user).join(TrainingAssignment.course)).all()
    clerk = {code: due for name, code, due in pairs if name == "clerk"}
    privacy = {code for name, code, _ in pairs if name == "privacy"}
    assert set(clerk) == {"hipaa-privacy", "hipaa-security", "pacs-viewer", "break-the-glass"}
    assert clerk["pacs-viewer"] == date(2036, 3, 1) and clerk["hipaa-privacy"] == date(2036, 1, 31)
    assert privacy == {"hipaa-privacy", "hipaa-security"}


def test_course_added_later_reaches_existing_users_when_training_pages_load(app, client, login_as):
    with time_machine.travel(at(2036, 1, 1), tick=False):
        login_as("requester", "clerk")
    with time_machine.travel(at(2036, 2, 1), tick=False), app.app_context():
        training.create_course(training.CourseData("Radiation safety", "", 24, ["requester"], 14))
        db.session.commit()
    with time_machine.travel(at(2036, 2, 1, 13), tick=False):
        login = client.post("/login", data={"username": "clerk", "password": PASSWORD})
        assert login.status_code == 302
        page = client.get("/training/mine").get_data(as_text=True)
    assert "Radiation safety" in page and "2036-02-15" in page
    with app.app_context():
        events = db.session.execute(select(AuditEvent.action).where(
            AuditEvent.action.like("training.%"))).scalars().all()
    assert "training.course_created" in events and "training.assigned" in events


def test_status_moves_from_not_yet_due_to_due_soon_to_overdue(app, make_user):
    with time_machine.travel(at(2036, 1, 1), tick=False):
        make_user("requester", "clerk")
    assert status_on(app, "clerk", "pacs-viewer", date(2036, 1, 2)) == training.Status.PENDING
    assert status_on(app, "clerk", "pacs-viewer", date(2036, 2, 1)) == training.Status.DUE_SOON
    assert status_on(app, "clerk", "pacs-viewer", date(2036, 3, 1)) == training.Status.DUE_SOON
    assert status_on(app, "clerk", "pacs-viewer", date(2036, 3, 2)) == training.Status.OVERDUE


def test_annual_course_expires_a_year_after_completion_and_one_time_course_never(app, client, login_as):
    with time_machine.travel(at(2036, 1, 1), tick=False):
        login_as("requester", "clerk")
    with time_machine.travel(at(2036, 1, 10), tick=False):
        client.post("/login", data={"username": "clerk", "password": PASSWORD})
        assert complete(client, assignment_of(app, "clerk", "hipaa-privacy"), "2036-01-10").status_code == 302
        assert complete(client, assignment_of(app, "clerk", "pacs-viewer"), "2036-01-10").status_code == 302
    assert status_on(app, "clerk", "hipaa-privacy", date(2036, 6, 1)) == training.Status.COMPLETE
    assert status_on(app, "clerk", "hipaa-privacy", date(2036, 12, 15)) == training.Status.DUE_SOON
    assert status_on(app, "clerk", "hipaa-privacy", date(2037, 1, 10)) == training.Status.DUE_SOON
    assert status_on(app, "clerk", "hipaa-privacy", date(2037, 1, 11)) == training.Status.EXPIRED
    assert status_on(app, "clerk", "pacs-viewer", date(2046, 1, 1)) == training.Status.COMPLETE


@pytest.mark.parametrize(("data", "message"), [
    ({"completed_on": "2036-02-02"}, "cannot be in the future"),
    ({"completed_on": "2035-12-31"}, "before clerk&#39;s account existed"),
    ({"score": "150"}, "from 0 to 100"),
    ({"score": "-1"}, "from 0 to 100"),
    ({"attested": ""}, "Tick the attestation"),
    ({"completed_on": ""}, "Give the completion date"),
])
def test_bad_completions_are_refused_with_a_clear_error(app, client, login_as, data, message):
    with time_machine.travel(at(2036, 1, 1), tick=False):
        login_as("requester", "clerk")
    with time_machine.travel(at(2036, 2, 1), tick=False):
        client.post("/login", data={"username": "clerk", "password": PASSWORD})
        fields = {"completed_on": "2036-01-15", "attested": "y", **data}
        if not fields["attested"]:
            del fields["attested"]
        response = client.post(f"/training/assignments/{assignment_of(app, 'clerk', 'hipaa-privacy')}",
                               data=fields, content_type="multipart/form-data")
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.execute(select(func.count()).select_from(TrainingCompletion)).scalar_one() == 0


def test_completion_keeps_attestation_time_certificate_and_history(app, client, login_as):
    with time_machine.travel(at(2036, 1, 1), tick=False):
        login_as("requester", "clerk")
    assignment = assignment_of(app, "clerk", "hipaa-privacy")
    with time_machine.travel(at(2036, 1, 20, 9), tick=False):
        client.post("/login", data={"username": "clerk", "password": PASSWORD})
        first = complete(client, assignment, "2036-01-19", score="88",
                         certificate=(io.BytesIO(PDF), "cert.pdf"))
        assert first.status_code == 302, first.get_data(as_text=True)
    with time_machine.travel(at(2037, 1, 5, 9), tick=False):
        client.post("/login", data={"username": "clerk", "password": PASSWORD})
        assert complete(client, assignment, "2037-01-04").status_code == 302
        page = client.get(f"/training/assignments/{assignment}").get_data(as_text=True)
    assert "2037-01-04" in page and "2036-01-19" in page and "cert.pdf" in page
    with app.app_context():
        done = db.session.execute(select(TrainingCompletion).order_by(TrainingCompletion.id)).scalars().all()
        assert [c.completed_on for c in done] == [date(2036, 1, 19), date(2037, 1, 4)]
        assert done[0].attested_at == at(2036, 1, 20, 9) and done[0].score == 88
        assert done[0].certificate_type == "application/pdf"
        completion_id = done[0].id
    with time_machine.travel(at(2037, 1, 5, 9), tick=False):
        download = client.get(f"/training/completions/{completion_id}/certificate")
    assert download.status_code == 200 and download.data == PDF
    download.close()


@pytest.mark.parametrize(("name", "content", "message"), [
    ("cert.exe", PDF, "a PDF, PNG or JPEG file"),
    ("cert.pdf", PNG, "not a real PDF file"),
    ("cert.png", b"x" * (1024 * 1024 + 10), "larger than 1 MB"),
])
def test_bad_certificate_files_are_refused(app_config, name, content, message):
    app_config["PACSDESK_MAX_UPLOAD_MB"] = 1
    from app import create_app
    from tests.conftest import AuthActions

    app = create_app(app_config)
    client = app.test_client()
    with time_machine.travel(at(2036, 1, 1), tick=False), app.app_context():
        from core.auth.models import Role
        from core.auth.services import NewUser, create_user
        from core.reference_data import load_reference_data

        load_reference_data()
        create_user(NewUser(username="clerk", role=Role.REQUESTER, password=PASSWORD))
        db.session.commit()
    with time_machine.travel(at(2036, 1, 5), tick=False):
        AuthActions(client).login("clerk")
        response = complete(client, assignment_of(app, "clerk", "hipaa-privacy"), "2036-01-04",
                            certificate=(io.BytesIO(content), name))
    assert response.status_code == 422 and message in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.execute(select(func.count()).select_from(TrainingCompletion)).scalar_one() == 0
        db.session.remove()
        db.engine.dispose()


def test_compliance_officer_records_on_behalf_and_others_cannot(app, client, auth, make_user):
    with time_machine.travel(at(2036, 1, 1), tick=False):
        make_user("requester", "clerk")
        make_user("requester", "nosy")
        make_user("compliance", "privacy")
    assignment = assignment_of(app, "clerk", "hipaa-privacy")
    with time_machine.travel(at(2036, 1, 5), tick=False):
        auth.login("nosy")
        assert client.get(f"/training/assignments/{assignment}").status_code == 404
        assert complete(client, assignment, "2036-01-04").status_code == 404
        auth.logout()
        auth.login("privacy")
        assert complete(client, assignment, "2036-01-04").status_code == 302
    with app.app_context():
        done = db.session.execute(select(TrainingCompletion)).scalar_one()
        assert done.recorded_by.username == "privacy" and done.user_id != done.recorded_by_id
        event = db.session.execute(select(AuditEvent).where(AuditEvent.action == "training.completed")
                                   ).scalar_one()
        assert event.username == "privacy" and '"on_behalf":true' in event.details


def test_overdue_banner_on_every_page_until_completed(app, client, login_as):
    with time_machine.travel(at(2036, 1, 1), tick=False):
        login_as("compliance", "privacy")
    with time_machine.travel(at(2036, 3, 1), tick=False):
        client.post("/login", data={"username": "privacy", "password": PASSWORD})
        assert "Training overdue" in client.get("/").get_data(as_text=True)
        assert "Training overdue" in client.get("/audit").get_data(as_text=True)
        complete(client, assignment_of(app, "privacy", "hipaa-privacy"), "2036-02-28")
        assert "Training overdue" in client.get("/").get_data(as_text=True)
        complete(client, assignment_of(app, "privacy", "hipaa-security"), "2036-02-28")
        assert "Training overdue" not in client.get("/").get_data(as_text=True)
    with time_machine.travel(at(2037, 3, 2), tick=False):  # both yearly courses have expired since
        client.post("/login", data={"username": "privacy", "password": PASSWORD})
        page = client.get("/").get_data(as_text=True)
        assert "<strong>Training overdue:</strong> HIPAA Privacy, HIPAA Security Awareness." in page


def test_matrix_filters_by_role_department_and_status_and_exports_csv(app, client, make_user, auth):
    with time_machine.travel(at(2036, 1, 1), tick=False):
        make_user("requester", "ct.tech", department="CT")
        make_user("requester", "mr.tech", department="MRI")
        make_user("technician", "pacs.sam", department="PACS team")
        make_user("compliance", "privacy", department="Privacy office")
    with time_machine.travel(at(2036, 3, 1), tick=False):
        auth.login("privacy")
        complete(client, assignment_of(app, "privacy", "hipaa-privacy"), "2036-02-01")
        page = client.get("/training?department=CT").get_data(as_text=True)
        assert "ct.tech" in page and "mr.tech" not in page
        page = client.get("/training?role=technician").get_data(as_text=True)
        assert "pacs.sam" in page and "ct.tech" not in page
        page = client.get("/training?status=complete").get_data(as_text=True)
        matrix = page[page.index('id="matrix"'):page.index('id="overdue"')]
        assert "privacy" in matrix and "ct.tech" not in matrix
        overdue = page[page.index('id="overdue"'):]
        assert "HIPAA Security Awareness" in overdue
        export = client.get("/training/export.csv?department=MRI")
    table = list(csv.DictReader(io.StringIO(export.get_data(as_text=True))))
    assert {r["username"] for r in table} == {"mr.tech"} and len(table) == 4
    assert {r["status"] for r in table} == {"Overdue", "Due soon"}
    with app.app_context():
        assert db.session.execute(select(AuditEvent).where(AuditEvent.action == "training.exported")
                                  ).scalar_one().username == "privacy"


def test_requester_sees_my_training_but_not_the_matrix(client, login_as):
    login_as("requester")
    assert client.get("/training/mine").status_code == 200
    assert client.get("/training").status_code == 403
    assert client.get("/training/courses").status_code == 403


def test_course_form_checks_values_and_audits_changes(app, client, login_as):
    login_as("compliance")
    bad = client.post("/training/courses/new", data={"title": "Fire safety", "recurrence_months": "0",
                                                     "days_to_complete": "30"})
    assert bad.status_code == 422 and "between 1 and 120 months" in bad.get_data(as_text=True)
    good = client.post("/training/courses/new", data={
        "title": "Fire safety", "recurrence_months": "24", "required_roles": ["technician"],
        "days_to_complete": "30", "is_active": "y"})
    assert good.status_code == 302
    fire = course_id(app, db_code(app, "Fire safety"))
    assert client.post(f"/training/courses/{fire}", data={"title": "Fire safety", "recurrence_months": "12",
                                                          "days_to_complete": "30", "is_active": "y"}
                       ).status_code == 302
    with app.app_context():
        course = db.session.get(Course, fire)
        assert course.recurrence_months == 12 and course.roles == []
        actions = db.session.execute(select(AuditEvent.action).where(
            AuditEvent.object_type == "training_course")).scalars().all()
    assert actions == ["training.course_created", "training.course_updated"]


def db_code(app, title: str) -> str:
    with app.app_context():
        return db.session.execute(select(Course.code).where(Course.title == title)).scalar_one()


def test_nightly_sync_assigns_users_whose_role_now_needs_a_course(app, make_user, queue_job, run_jobs):
    from core.auth.models import Role
    from core.auth.services import change_role
    from core.jobs.models import Job

    with time_machine.travel(at(2036, 1, 1), tick=False):
        user = make_user("compliance", "moved")
        with app.app_context():
            change_role(db.session.get(User, user.id), Role.TECHNICIAN)
            db.session.commit()
        first = queue_job("audit.training_sync")
        run_jobs()
        second = queue_job("audit.training_sync")
        run_jobs()
        with app.app_context():
            assert db.session.get(Job, first).result == {"assignments_created": 2}  # viewer, break-the-glass
            assert db.session.get(Job, second).result == {"assignments_created": 0}


def test_retention_destroys_superseded_completions_only(app, client, login_as):
    with time_machine.travel(at(2026, 1, 1), tick=False):
        login_as("requester", "clerk")
    assignment = assignment_of(app, "clerk", "hipaa-privacy")
    for year in (2026, 2027, 2028):
        with time_machine.travel(at(year, 2, 1), tick=False):
            client.post("/login", data={"username": "clerk", "password": PASSWORD})
            assert complete(client, assignment, f"{year}-01-20").status_code == 302
    with time_machine.travel(at(2036, 1, 1), tick=False), app.app_context():
        retention.update_policy("training_records", 6, 0, 0, "completed", True)
        db.session.commit()
        plan = retention.dry_run()
        report = retention.run_retention("tester")
        left = db.session.execute(select(TrainingCompletion.completed_on)).scalars().all()
    entry = {c.key: c for c in report.classes}["training_records"]
    assert entry.count == 2 and report.digest == plan.digest
    assert left == [date(2028, 1, 20)]


def test_training_pages_render_for_compliance(app, client, login_as):
    login_as("compliance", "privacy")
    for url in ("/training", "/training/courses", "/training/courses/new",
                f"/training/courses/{course_id(app, 'hipaa-privacy')}", "/training/mine",
                f"/training/assignments/{assignment_of(app, 'privacy', 'hipaa-privacy')}"):
        response = client.get(url)
        assert response.status_code == 200, url
    assert client.get("/training/assignments/999999").status_code == 404


def test_training_commands_sync_and_list_overdue(app, runner, make_user):
    with time_machine.travel(at(2036, 1, 1), tick=False):
        make_user("compliance", "privacy")
    with time_machine.travel(at(2036, 3, 1), tick=False):
        synced = runner.invoke(args=["training", "sync"])
        overdue = runner.invoke(args=["training", "overdue"])
    assert synced.exit_code == 0 and "0 assignments created" in synced.output
    assert overdue.exit_code == 0 and "privacy" in overdue.output and "2 overdue or expired" in overdue.output


def test_dashboard_counts_only_overdue_or_expired_training(app, client, make_user, auth):
    with time_machine.travel(at(2036, 1, 1), tick=False):
        make_user("requester", "ct.tech", department="CT")
        make_user("compliance", "privacy", department="Privacy office")
    figure = re.compile(r'status=overdue">(\d+)</a>(?: \((\d+) people\))?')
    with time_machine.travel(at(2036, 1, 2), tick=False):
        auth.login("privacy")
        assert figure.search(client.get("/").get_data(as_text=True)).groups() == ("0", None), \
            "assignments not yet due are not overdue"
    with time_machine.travel(at(2036, 3, 1), tick=False):
        auth.login("privacy")
        complete(client, assignment_of(app, "privacy", "hipaa-privacy"), "2036-02-01")
        with app.app_context():
            _, rows = training.matrix(training.MatrixFilter())
            late = [(u.username, s) for u, cells in rows for s in cells.values() if s.needs_action]
        assert late and {name for name, _ in late} == {"ct.tech", "privacy"}
        shown = figure.search(client.get("/").get_data(as_text=True)).groups()
        assert shown == (str(len(late)), "2")
