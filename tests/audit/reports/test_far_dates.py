"""Reports refuse dates outside the accepted years with a message naming the field, never a crash."""

from __future__ import annotations

from sqlalchemy import select

from audit.trail.models import AuditEvent
from core.extensions import db


def test_cli_refuses_a_far_future_period_naming_the_date(runner, tmp_path):
    out = tmp_path / "x.pdf"
    result = runner.invoke(args=["reports", "build", "helpdesk", "--from", "9999-12-20",
                                 "--to", "9999-12-31", "-o", str(out)])
    assert result.exit_code == 2, result.output
    assert "From: 9999-12-20 is out of range" in result.output
    assert "between 1900 and 2999" in result.output
    assert "Traceback" not in result.output
    assert not out.exists()


def test_cli_refuses_a_year_before_1900(runner, tmp_path):
    out = tmp_path / "x.pdf"
    result = runner.invoke(args=["reports", "build", "access-audit", "--from", "0001-01-01",
                                 "--to", "0001-01-31", "-o", str(out)])
    assert result.exit_code == 2, result.output
    assert "From: 0001-01-01 is out of range" in result.output
    assert not out.exists()


def test_reports_page_refuses_a_far_future_period_as_a_form_error(app, client, login_as):
    login_as("compliance")
    response = client.post("/reports", data={"kind": "helpdesk", "date_from": "2026-12-20",
                                             "date_to": "9999-12-31"})
    assert response.status_code == 400
    assert b"To: 9999-12-31 is out of range" in response.data
    with app.app_context():
        generated = db.session.execute(
            select(AuditEvent.id).where(AuditEvent.action == "report.generate")).all()
    assert generated == []


def test_last_accepted_year_still_builds_its_period_bounds(runner, tmp_path):
    out = tmp_path / "late.pdf"
    result = runner.invoke(args=["reports", "build", "helpdesk", "--from", "2999-12-20",
                                 "--to", "2999-12-31", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes().startswith(b"%PDF-")
