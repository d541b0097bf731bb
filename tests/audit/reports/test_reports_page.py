"""The /reports page: who may generate what, background generation, audited downloads."""

from __future__ import annotations

import json

from sqlalchemy import select

from audit.reports.models import ReportJob
from audit.trail.models import AuditEvent
from core.extensions import db
from tests.conftest import PASSWORD
from tests.helpers import fixture_event


def events(app, action: str) -> list[AuditEvent]:
    """Audit events of one action, oldest first."""
    with app.app_context():
        found = list(db.session.scalars(select(AuditEvent).where(AuditEvent.action == action)
                                        .order_by(AuditEvent.seq)))
        db.session.expunge_all()
        return found


def generate(client, **data):
    """Post the report form."""
    form = {"kind": "access-audit", "date_from": "2026-03-01", "date_to": "2026-03-31"}
    form.update(data)
    return client.post("/reports", data=form)


def test_requester_gets_403_on_the_reports_page_and_when_posting(client, login_as):
    login_as("requester")
    assert client.get("/reports").status_code == 403
    assert generate(client).status_code == 403


def test_technician_cannot_generate_a_compliance_report(app, client, login_as):
    login_as("technician")
    page = client.get("/reports")
    assert page.status_code == 200
    assert b"Access audit report" not in page.data
    assert generate(client).status_code == 403
    assert events(app, "report.generate") == []


def test_compliance_officer_generates_in_the_background_and_downloads_audited(app, client, run_jobs,
                                                                              login_as, tmp_path):
    officer = login_as("compliance", "privacy.garcia")
    response = generate(client)
    assert response.status_code == 302
    job_url = response.headers["Location"]
    job_id = job_url.rsplit("/", 1)[1]
    [event] = events(app, "report.generate")
    assert event.username == "privacy.garcia" and event.object_id == job_id
    assert json.loads(event.details) == {"kind": "access-audit", "report_id": job_id,
                                         "from": "2026-03-01", "to": "2026-03-31",
                                         "user": None, "object": None, "run": None,
                                         "identifiers": False}
    run_jobs()
    page = client.get(job_url)
    assert b"Download PDF" in page.data and b"data-refresh-seconds" not in page.data
    pdf = client.get(f"{job_url}/download")
    assert pdf.status_code == 200 and pdf.data.startswith(b"%PDF-")
    assert pdf.headers["Content-Disposition"].startswith("attachment;")
    [download] = events(app, "report.download")
    assert download.user_id == officer.id and download.object_id == job_id


def test_waiting_page_refreshes_itself_until_the_report_is_ready(app, client, login_as):
    login_as("compliance")
    with app.app_context():
        job = ReportJob(kind="access-audit", params={"from": "2026-03-01",
                                                                "to": "2026-03-31"},
                        requested_by_id=None, status="running", progress=40,
                        stage="Access outside business hours")
        db.session.add(job)
        db.session.flush()
        fixture_event("report", job.id)
        db.session.commit()
        job_id = job.id
    page = client.get(f"/reports/{job_id}")
    assert b'data-refresh-seconds="2"' in page.data
    assert b"Access outside business hours" in page.data


def test_only_the_requester_or_compliance_may_download_a_report(app, client, auth, make_user,
                                                                   login_as, run_jobs):
    login_as("technician", "tech.one")
    response = generate(client, kind="helpdesk")
    assert response.status_code == 302
    job_url = response.headers["Location"]
    run_jobs()
    auth.logout()
    make_user("technician", "tech.two")
    auth.login("tech.two", PASSWORD)
    assert client.get(f"{job_url}/download").status_code == 404
    auth.logout()
    make_user("compliance", "officer")
    auth.login("officer", PASSWORD)
    assert client.get(f"{job_url}/download").status_code == 200


def test_bad_period_is_a_form_error_not_a_crash(app, client, login_as):
    login_as("compliance")
    reversed_ = generate(client, date_from="2026-03-31", date_to="2026-03-01")
    assert reversed_.status_code == 400
    assert b"before it starts" in reversed_.data
    too_long = generate(client, date_from="2000-01-01", date_to="2019-12-31")
    assert b"at most 10 years" in too_long.data
    unknown = generate(client, user="nobody.here")
    assert b"There is no user named" in unknown.data
    not_a_kind = generate(client, kind="payroll")
    assert not_a_kind.status_code == 400
    assert events(app, "report.generate") == []
