"""`pacsdesk reports build`: a PDF anchored to the audit chain, clear errors for bad input."""

from __future__ import annotations

import re

import pytest

from tests.audit.reports.conftest import pdf_text


def test_chain_head_printed_in_the_pdf_matches_audit_verify(runner, make_user, seed_event, tmp_path):
    tech = make_user("technician", "sam.tech")
    seed_event("2026-03-10 10:00", "user.login", user=tech)
    out = tmp_path / "audit.pdf"
    built = runner.invoke(args=["reports", "build", "access-audit", "--from", "2026-03-01",
                                "--to", "2026-03-31", "-o", str(out)])
    assert built.exit_code == 0, built.output
    text = pdf_text(out.read_bytes(), tmp_path)
    printed = re.search(r"head hash ([0-9a-f]{64})", text).group(1)
    verified = runner.invoke(args=["audit", "verify"])
    assert verified.exit_code == 0, verified.output
    assert printed in verified.output
    count = int(re.search(r"intact: (\d+) events", verified.output).group(1))
    assert re.search(rf"Audit trail at generation\s+{count} events, head event #{count}", text)
    # The report verified and anchored the trail (run #1), then read the head: the newest event
    # is that run's own audit event.
    assert re.search(rf"Chain verification\s+Run #1 \(full\), .*: intact through event #{count - 1}, "
                     "anchored", text)
    against = runner.invoke(args=["audit", "verify", "--against", printed])
    assert against.exit_code == 0, against.output
    assert f"head hash {printed} is event #{count}, still in the trail" in against.output


def test_cli_writes_an_empty_period_report(runner, tmp_path):
    out = tmp_path / "empty.pdf"
    result = runner.invoke(args=["reports", "build", "access-audit", "--from", "1999-01-01",
                                 "--to", "1999-01-31", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "There was no activity in this period" in pdf_text(out.read_bytes(), tmp_path)


@pytest.mark.parametrize(("args", "message"), [
    (["access-audit", "--from", "2026-03-31", "--to", "2026-03-01"], "before it starts"),
    (["access-audit", "--from", "2000-01-01", "--to", "2019-12-31"], "at most 10 years"),
    (["access-audit", "--from", "2026-03-01", "--to", "2026-03-31", "--user", "ghost"],
     "There is no user named 'ghost'"),
    (["payroll", "--from", "2026-03-01", "--to", "2026-03-31"], "There is no report kind 'payroll'"),
    (["access-audit", "--from", "2026-02-30", "--to", "2026-03-31"], "is not a date"),
    (["access-audit", "--from", "2026-03-01", "--to", "2026-03-31", "--object", "PD-000123"],
     "must look like TYPE:ID"),
    (["access-audit"], "needs a period"),
])
def test_cli_refuses_bad_input_with_a_clear_message(runner, tmp_path, args, message):
    out = tmp_path / "x.pdf"
    result = runner.invoke(args=["reports", "build", *args, "-o", str(out)])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert not out.exists()


def test_cli_generation_is_an_audit_event_with_kind_period_and_report_id(app, runner, tmp_path):
    import json

    from sqlalchemy import select

    from audit.trail.models import AuditEvent
    from core.extensions import db

    out = tmp_path / "t.pdf"
    result = runner.invoke(args=["reports", "build", "training", "--from", "2026-01-01",
                                 "--to", "2026-06-30", "-o", str(out)])
    assert result.exit_code == 0, result.output
    report_id = re.search(r"training report (\S+) written", result.output).group(1)
    with app.app_context():
        event = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "report.generate")).one()
        assert event.object_id == report_id
        details = json.loads(event.details)
    assert details["kind"] == "training" and details["report_id"] == report_id
    assert details["from"] == "2026-01-01" and details["to"] == "2026-06-30"
    assert details["source"] == "cli"
    assert report_id in pdf_text(out.read_bytes(), tmp_path)


def test_cli_lists_the_five_report_kinds(runner):
    result = runner.invoke(args=["reports", "kinds"])
    assert result.exit_code == 0
    for kind in ("access-audit", "training", "retention", "inventory", "helpdesk"):
        assert kind in result.output
