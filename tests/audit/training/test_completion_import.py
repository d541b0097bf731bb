"""Back-loading past completions from CSV: a preview naming every bad row and column, then all or none."""

from __future__ import annotations

import base64
import io
import re
from datetime import date

import pytest
import time_machine
from sqlalchemy import func, select

from audit.trail.models import AuditEvent
from audit.training import services as training
from audit.training.models import TrainingCompletion
from core.extensions import db
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
