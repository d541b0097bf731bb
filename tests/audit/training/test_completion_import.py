"""Back-loading past completions from CSV: a preview naming every bad row and column, then all or none."""

from __future__ import annotations

import base64
import io
import json
import re
from datetime import date

import pytest
import time_machine
from sqlalchemy import func, select

from audit.trail.chain import verify_chain
from audit.trail.models import AuditEvent
from audit.training import bulk
from audit.training import services as training
from audit.training.models import Course, TrainingCompletion
from core.auth.services import disable_user, find_user
from core.extensions import db
from core.jobs.models import JobStatus
from core.jobs.queue import get_job
from tests.audit.compliance_fixtures import at
from tests.audit.training.test_training import assignment_of, complete, status_on

GOOD = (
    "username,course,completed_on,notes\n"
    "ct.ann,hipaa-privacy,2035-06-01,Paper sign-in sheet\n"
    "ct.ann@example.org,HIPAA Security Awareness,06/15/2035,\n"
    'pacs.sam,"Emergency ""break-the-glass"" access procedure",2035-09-30,\n'
    "pacs.sam,hipaa-privacy,2034-12-01,Previous employer\n"
)


def upload(client, text: str | bytes, name: str = "past.csv"):
    raw = text.encode() if isinstance(text, str) else text
    return client.post("/training/import", data={"file": (io.BytesIO(raw), name)},
                       content_type="multipart/form-data")


def confirm(client, page: str):
    payload = re.search(r'name="payload" type="hidden" value="([^"]*)"', page)
    source = re.search(r'name="source" type="hidden" value="([^"]*)"', page)
    assert payload is not None and source is not None, page
    return client.post("/training/import", data={"payload": payload.group(1), "source": source.group(1)})


def completions(app) -> list[TrainingCompletion]:
    with app.app_context():
        rows = list(db.session.execute(select(TrainingCompletion).order_by(TrainingCompletion.id)).scalars())
        for row in rows:
            _ = row.user.username, row.recorded_by.username
        db.session.expunge_all()
        return rows


def actions(app, action: str) -> int:
    with app.app_context():
        return db.session.execute(select(func.count()).select_from(AuditEvent)
                                  .where(AuditEvent.action == action)).scalar_one()


@pytest.fixture
def staff(make_user):
    """Two people whose accounts were created on 1 January 2036, and a privacy officer."""
    with time_machine.travel(at(2036, 1, 1), tick=False):
        make_user("requester", "ct.ann", full_name="Ann Carter", email="ct.ann@example.org")
        make_user("technician", "pacs.sam", full_name="Sam Ford")
        make_user("compliance", "privacy")


def test_a_file_is_previewed_then_imported_with_dates_before_the_accounts(app, client, auth, staff):
    with time_machine.travel(at(2036, 1, 10), tick=False):
        auth.login("privacy")
        form = client.get("/training/import").get_data(as_text=True)
        assert "YYYY-MM-DD (2024-03-31) or MM/DD/YYYY (03/31/2024)" in form
        preview = upload(client, GOOD)
        page = preview.get_data(as_text=True)
        assert preview.status_code == 200
        assert page.count("Will be recorded") == 4 and "Import 4 completions" in page
        assert "Emergency &#34;break-the-glass&#34; access procedure" in page
        assert completions(app) == []
        assert status_on(app, "ct.ann", "hipaa-privacy", date(2036, 1, 10)) == training.Status.DUE_SOON
        done = confirm(client, page)
        assert done.status_code == 302 and done.headers["Location"].endswith("/training")
        assert "Imported 4 completion(s)" in client.get("/training").get_data(as_text=True)
    rows = completions(app)
    assert [(r.user.username, r.completed_on) for r in rows] == [
        ("ct.ann", date(2035, 6, 1)), ("ct.ann", date(2035, 6, 15)), ("pacs.sam", date(2035, 9, 30)),
        ("pacs.sam", date(2034, 12, 1))]
    assert rows[0].notes == "Paper sign-in sheet" and rows[3].notes == "Previous employer"
    assert {r.recorded_by.username for r in rows} == {"privacy"}
    assert all(r.attestation.startswith("The trainee attested") for r in rows)
    assert actions(app, "training.completed") == 4 and actions(app, "training.imported") == 1
    # Status and due dates follow from the imported completions.
    day = date(2036, 1, 10)
    assert status_on(app, "ct.ann", "hipaa-privacy", day) == training.Status.COMPLETE
    assert status_on(app, "pacs.sam", "hipaa-privacy", day) == training.Status.EXPIRED
    with app.app_context():
        sam = {s.assignment.course.code: s for s in training.user_statuses(rows[2].user_id, day)}
        assert sam["hipaa-privacy"].due_on == date(2035, 12, 1)


def test_every_bad_row_is_named_with_its_column_and_nothing_is_imported(app, client, auth, staff):
    text = ("username,course,completed_on\n"
            "nobody,hipaa-privacy,2035-01-01\n"
            "ct.ann,Fire safety,2035-01-01\n"
            "ct.ann,hipaa-privacy,31/12/2035\n"
            "ct.ann,hipaa-privacy,2036-02-01\n"
            ",hipaa-security,\n"
            "pacs.sam,hipaa-security,2035-03-03\n"
            "PACS.SAM,HIPAA security awareness,03/03/2035\n")
    with time_machine.travel(at(2036, 1, 10), tick=False):
        auth.login("privacy")
        response = upload(client, text)
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    problems = page[page.index('id="problems"'):]
    expected = [("Row 2", "username", "no account &#39;nobody&#39;"),
                ("Row 3", "course", "no course with the code or title &#39;Fire safety&#39;"),
                ("Row 4", "completed_on", "&#39;31/12/2035&#39; is not a date in the form YYYY-MM-DD"),
                ("Row 5", "completed_on", "2036-02-01 is in the future"),
                ("Row 6", "username", "empty; give the user name or e-mail address"),
                ("Row 6", "completed_on", "empty; give the date"),
                ("Row 8", "", "the same person, course and date as row 7")]
    for row, column, message in expected:
        found = re.search(rf"<td>{row}</td><td>{column}</td><td>{re.escape(message)}", problems)
        assert found, (row, message)
    assert "Row 7<" not in problems and 'name="payload"' not in page
    assert completions(app) == []


@pytest.mark.parametrize(("content", "message"), [
    ("user,when\nct.ann,2035-01-01\n", "course</td><td>this column is missing"),
    ("username,course,completed_on,score\nct.ann,hipaa-privacy,2035-01-01,90\n",
     "score</td><td>unknown column"),
    ("username,course,completed_on\n", "the file has no rows under its header"),
    (b"username,course,completed_on\n\xff\xfe,x,y\n", "the file is not UTF-8 text"),
])
def test_a_file_of_the_wrong_shape_is_refused(app, client, auth, staff, content, message):
    auth.login("privacy")
    response = upload(client, content)
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)


def test_a_changed_file_sent_back_at_confirmation_is_checked_again(app, client, auth, staff):
    bad = base64.b64encode(b"username,course,completed_on\nct.ann,hipaa-privacy,2099-01-01\n").decode()
    with time_machine.travel(at(2036, 1, 10), tick=False):
        auth.login("privacy")
        response = client.post("/training/import", data={"payload": bad, "source": "past.csv"})
        assert response.status_code == 422
        assert "2099-01-01 is in the future" in response.get_data(as_text=True)
        damaged = client.post("/training/import", data={"payload": "not base64!", "source": "past.csv"})
        assert damaged.status_code == 302
    assert completions(app) == []


def test_rows_already_recorded_are_skipped_with_the_reason(app, client, auth, staff):
    with time_machine.travel(at(2036, 1, 10), tick=False):
        auth.login("ct.ann")
        complete(client, assignment_of(app, "ct.ann", "hipaa-privacy"), "2036-01-09")
        auth.logout()
        auth.login("privacy")
        page = upload(client, "username,course,completed_on\nct.ann,hipaa-privacy,2036-01-09\n"
                              "pacs.sam,hipaa-privacy,2036-01-09\n").get_data(as_text=True)
        assert "already has a completion of HIPAA Privacy dated 2036-01-09 (recorded by ct.ann)" in page
        assert "Import 1 completion<" in page
        assert confirm(client, page).status_code == 302
        again = upload(client, "username,course,completed_on\nct.ann,hipaa-privacy,2036-01-09\n")
        assert "Every row is already recorded" in again.get_data(as_text=True)
    assert len(completions(app)) == 2


def test_only_training_managers_import(client, auth, staff):
    auth.login("ct.ann")
    assert client.get("/training/import").status_code == 403
    assert upload(client, GOOD).status_code == 403


def imported_event(app) -> dict:
    """The details of the latest ``training.imported`` event, with the id of its user."""
    with app.app_context():
        event = db.session.execute(select(AuditEvent).where(AuditEvent.action == "training.imported")
                                   .order_by(AuditEvent.id.desc()).limit(1)).scalar_one()
        return {**json.loads(event.details), "user_id": event.user_id}


def many_rows(count: int, course: str = "hipaa-privacy") -> str:
    """A file of ``count`` distinct completions of two people, one a day each from 2031, in memory."""
    first = date(2031, 1, 1).toordinal()
    lines = [f"{('ct.ann', 'pacs.sam')[i % 2]},{course},{date.fromordinal(first + i // 2)}"
             for i in range(count)]
    return "username,course,completed_on\n" + "\n".join(lines) + "\n"


def test_a_large_file_is_previewed_then_imported_by_a_job_whose_page_shows_the_result(
        app, client, auth, staff, run_jobs):
    with time_machine.travel(at(2036, 1, 10), tick=False):
        auth.login("privacy")
        small = confirm(client, upload(client, many_rows(1)).get_data(as_text=True))
        assert small.status_code == 302 and small.headers["Location"].endswith("/training"), "in the request"
        page = upload(client, many_rows(1500)).get_data(as_text=True)
        assert "Preview: 1499 to record, 1 already recorded" in page
        assert "The first 100 of 1,500 rows are shown" in page and page.count("<tr><td>") == 100
        queued = confirm(client, page)
        assert queued.status_code == 302 and "/training/import/jobs/" in queued.headers["Location"]
        waiting = client.get(queued.headers["Location"]).get_data(as_text=True)
        assert "waiting for the job worker" in waiting and 'id="import-progress"' in waiting
        assert len(completions(app)) == 1, "nothing is imported inside the request"
        run_jobs()
        done = client.get(queued.headers["Location"]).get_data(as_text=True)
    assert "Imported 1,499 completions</strong>" in done and "from 1,500 rows; 1 row skipped" in done
    rows = completions(app)
    assert len(rows) == 1500 and {r.recorded_by.username for r in rows} == {"privacy"}
    assert actions(app, "training.completed") == 1500 and actions(app, "training.imported") == 2
    event = imported_event(app)
    assert (event["recorded"], event["rows"], event["source"]) == (1499, 1500, "past.csv")
    assert event["skipped"] == ["row 2: ct.ann"] and event["user_id"] == rows[0].recorded_by_id


def test_only_the_person_who_queued_an_import_sees_its_job_page(app, client, auth, staff, make_user):
    make_user("compliance", "other.officer")
    with time_machine.travel(at(2036, 1, 10), tick=False):
        auth.login("privacy")
        queued = confirm(client, upload(client, many_rows(1200)).get_data(as_text=True))
        auth.logout()
        auth.login("other.officer")
        assert client.get(queued.headers["Location"]).status_code == 404
        assert client.get("/training/import/jobs/999999").status_code == 404


def test_a_bad_row_in_a_large_file_is_named_at_the_preview_and_nothing_is_written(app, client, auth, staff):
    text = many_rows(1500).replace("sam,hipaa-privacy,2031-01-01", "sam,hipaa-privacy,2031-02-30", 1)
    with time_machine.travel(at(2036, 1, 10), tick=False):
        auth.login("privacy")
        response = upload(client, text)
    page = response.get_data(as_text=True)
    assert response.status_code == 422 and 'name="payload"' not in page
    assert "<td>Row 3</td><td>completed_on</td><td>&#39;2031-02-30&#39; is not a date" in page
    assert completions(app) == [] and actions(app, "training.imported") == 0


def test_a_row_gone_bad_between_preview_and_job_is_listed_on_the_job_page(app, client, auth, staff, run_jobs):
    with time_machine.travel(at(2036, 1, 10), tick=False):
        auth.login("privacy")
        page = upload(client, many_rows(1200, course="HIPAA Privacy")).get_data(as_text=True)
        queued = confirm(client, page)
        with app.app_context():
            course = db.session.execute(select(Course).where(Course.code == "hipaa-privacy")).scalar_one()
            training.update_course(course.id, training.CourseData(
                "HIPAA Privacy (2036)", course.description, course.recurrence_months, course.roles,
                course.days_to_complete))
            db.session.commit()
        run_jobs()
        done = client.get(queued.headers["Location"]).get_data(as_text=True)
    assert "Nothing was imported: 1200 problems to fix (the first 500 are listed)" in done
    assert "<td>Row 2</td><td>course</td><td>no course with the code or title &#39;HIPAA Privacy&#39;" in done
    assert completions(app) == [] and actions(app, "training.imported") == 0


def test_an_import_whose_officer_was_disabled_before_it_ran_fails_and_writes_nothing(
        app, client, auth, staff, run_jobs):
    with time_machine.travel(at(2036, 1, 10), tick=False):
        auth.login("privacy")
        queued = confirm(client, upload(client, many_rows(1200)).get_data(as_text=True))
        with app.app_context():
            disable_user(find_user("privacy"))
            db.session.commit()
        run_jobs()
    with app.app_context():
        job = get_job(int(queued.headers["Location"].rsplit("/", 1)[1]))
        assert job is not None and job.status == JobStatus.FAILED
        assert "was disabled or no longer manages training" in (job.error or "")
    assert completions(app) == [] and actions(app, "training.imported") == 0


def test_a_file_over_the_row_limit_is_refused_naming_the_limit(app, client, auth, staff):
    auth.login("privacy")
    response = upload(client, "username,course,completed_on\n" + "ct.ann,hipaa-privacy,2025-01-01\n" * 50_001)
    assert response.status_code == 422
    assert "<td>Row 50002</td><td>file</td><td>more than 50,000 rows; split the file" in \
        response.get_data(as_text=True)
    assert completions(app) == []


def test_the_cli_dry_run_prints_the_counts_and_writes_nothing(app, runner, staff, tmp_path):
    path = tmp_path / "lms.csv"
    path.write_text(GOOD)
    with time_machine.travel(at(2036, 1, 10), tick=False):
        result = runner.invoke(args=["training", "import", str(path), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "lms.csv: 4 row(s): 4 to record, 0 already recorded. Dry run: nothing was imported." in \
        result.stdout
    assert completions(app) == [] and actions(app, "training.imported") == 0


def test_the_cli_imports_every_row_audited_as_its_operator(app, runner, staff, tmp_path):
    path = tmp_path / "lms.csv"
    path.write_text(GOOD)
    with time_machine.travel(at(2036, 1, 10), tick=False):
        assert runner.invoke(args=["training", "import", str(path)]).exit_code == 2, "--user is needed"
        refused = runner.invoke(args=["training", "import", str(path), "--user", "ct.ann"])
        assert refused.exit_code == 1 and "no active account 'ct.ann' that manages training" in refused.output
        result = runner.invoke(args=["training", "import", str(path), "--user", "privacy",
                                     "--source", "LMS export 2035"])
    assert result.exit_code == 0, result.output
    assert "Imported 4 completion(s) from lms.csv (4 row(s): 4 to record, 0 already recorded)." in \
        result.stdout
    rows = completions(app)
    assert len(rows) == 4 and {r.recorded_by.username for r in rows} == {"privacy"}
    assert actions(app, "training.completed") == 4 and actions(app, "training.imported") == 1
    event = imported_event(app)
    assert event["source"] == "LMS export 2035" and event["user_id"] == rows[0].recorded_by_id


def test_the_cli_lists_a_bad_row_on_stderr_exits_2_and_writes_nothing(app, runner, staff, tmp_path):
    path = tmp_path / "lms.csv"
    path.write_text(GOOD + "nobody,hipaa-privacy,2035-01-01\n")
    with time_machine.travel(at(2036, 1, 10), tick=False):
        for extra in (["--dry-run"], ["--user", "privacy"]):
            result = runner.invoke(args=["training", "import", str(path), *extra])
            assert result.exit_code == 2, result.output
            assert "lms.csv: row 6: username: no account 'nobody'" in result.stderr
            assert "1 problem(s) in lms.csv; nothing was imported." in result.stderr and not result.stdout
    assert completions(app) == [] and actions(app, "training.imported") == 0


def test_a_long_import_commits_part_by_part_and_a_run_stopped_part_way_is_finished_by_the_next(
        app, staff, monkeypatch):
    monkeypatch.setattr(bulk, "IMPORT_CHUNK", 1)  # four rows, four parts
    seen = []

    def stopped_in_the_third_part(recorded: int, total: int) -> None:
        seen.append((recorded, total))
        if len(seen) == 3:
            raise RuntimeError("the job worker was stopped")
        db.session.commit()  # what the job does between two parts

    with time_machine.travel(at(2036, 1, 10), tick=False), app.app_context():
        privacy = find_user("privacy")
        with pytest.raises(RuntimeError, match="stopped"):
            bulk.import_completions(GOOD.encode(), privacy, "lms.csv", stopped_in_the_third_part)
        db.session.rollback()
        assert seen == [(1, 4), (2, 4), (3, 4)]
        assert len(completions(app)) == 2, "two parts committed, the third rolled back"
        plan = bulk.import_completions(GOOD.encode(), privacy, "lms.csv", lambda *_: db.session.commit())
        db.session.commit()
        assert (len(plan.to_record), len(plan.skipped)) == (2, 2)
        assert verify_chain().ok
    assert len(completions(app)) == 4
    assert actions(app, "training.completed") == 4 and actions(app, "training.imported") == 1
