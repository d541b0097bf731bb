"""Stored report PDFs are a retention record class: listed, purged when old, kept when held."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import time_machine
from sqlalchemy import select

from audit.reports.models import ReportJob, ReportStatus
from audit.retention import engine as retention
from audit.retention import holds as legal_holds
from audit.trail.models import AuditEvent
from core.auth.models import User
from core.extensions import db
from tests.helpers import fixture_event

NOW = datetime(2036, 6, 15, 12, 0, tzinfo=UTC)


def stored_report(app, user: User, created: datetime) -> str:
    """A finished report job with its PDF, created at ``created``; returns its id."""
    with app.app_context():
        job = ReportJob(kind="access-audit", params={"from": "2030-01-01", "to": "2030-01-31"},
                        status=ReportStatus.DONE, progress=100, requested_by_id=user.id,
                        created_at=created, finished_at=created, pdf=b"%PDF-1.7 patient MRN 123",
                        pdf_size=24)
        db.session.add(job)
        db.session.flush()
        fixture_event("report", job.id)
        db.session.commit()
        return job.id


def enable_policy(app, years: int = 1) -> None:
    """Enforce the stored report files policy."""
    with app.app_context():
        retention.update_policy("report_files", years, 0, 0, "created", True)
        db.session.commit()


def remaining(app) -> set[str]:
    with app.app_context():
        return set(db.session.execute(select(ReportJob.id)).scalars())


def test_retention_page_lists_stored_report_files(client, login_as):
    login_as("compliance")
    page = client.get("/retention").get_data(as_text=True)
    assert "Stored report files" in page


def test_dry_run_lists_an_old_report_and_the_run_purges_it(app, runner, make_user):
    officer = make_user("compliance", "privacy")
    old = stored_report(app, officer, datetime(2030, 3, 1, tzinfo=UTC))
    young = stored_report(app, officer, datetime(2036, 3, 1, tzinfo=UTC))
    enable_policy(app)
    with time_machine.travel(NOW, tick=False):
        listing = runner.invoke(args=["retention", "run", "--dry-run"])
        assert listing.exit_code == 0 and "Stored report files" in listing.output, listing.output
        dry = runner.invoke(args=["retention", "run", "--dry-run", "--json"])
        assert dry.exit_code == 0, dry.output
        entry = next(c for c in json.loads(dry.output)["classes"] if c["key"] == "report_files")
        assert entry["count"] == 1 and entry["oldest"].startswith("2030-03-01")
        assert remaining(app) == {old, young}
        run = runner.invoke(args=["retention", "run"])
        assert run.exit_code == 0, run.output
    assert remaining(app) == {young}
    with app.app_context():
        batch = db.session.execute(select(AuditEvent).where(
            AuditEvent.action == "retention.batch_purged", AuditEvent.object_type == "report")
        ).scalar_one()
        assert json.loads(batch.details)["count"] == 1
        assert json.loads(batch.details)["record_class"] == "report_files"


def test_held_reports_survive_by_requester_and_by_class_range(app, runner, make_user):
    officer = make_user("compliance", "privacy")
    other = make_user("admin", "boss")
    by_user = stored_report(app, officer, datetime(2030, 3, 1, tzinfo=UTC))
    in_range = stored_report(app, other, datetime(2031, 5, 1, tzinfo=UTC))
    unheld = stored_report(app, other, datetime(2032, 5, 1, tzinfo=UTC))
    enable_policy(app)
    with time_machine.travel(NOW, tick=False), app.app_context():
        placer = db.session.execute(select(User).where(User.username == "privacy")).scalar_one()
        legal_holds.place_hold(legal_holds.NewHold(reason="Lawsuit", kind="user", object_key="privacy"),
                               placer)
        legal_holds.place_hold(legal_holds.NewHold(
            reason="Audit", kind="class", record_class="report_files",
            start=datetime(2031, 1, 1, tzinfo=UTC), end=datetime(2031, 12, 31, tzinfo=UTC)), placer)
        db.session.commit()
    with time_machine.travel(NOW, tick=False):
        dry = runner.invoke(args=["retention", "run", "--dry-run", "--json"])
        entry = next(c for c in json.loads(dry.output)["classes"] if c["key"] == "report_files")
        assert entry["count"] == 1 and entry["held"] == 2
        assert runner.invoke(args=["retention", "run"]).exit_code == 0
    assert remaining(app) == {by_user, in_range}
    assert unheld not in remaining(app)


def test_hold_on_a_report_range_with_no_report_is_refused(app, make_user):
    officer = make_user("compliance", "privacy")
    with app.app_context():
        placer = db.session.get(User, officer.id)
        with pytest.raises(legal_holds.RetentionError, match="matches no record"):
            legal_holds.place_hold(legal_holds.NewHold(
                reason="Audit", kind="class", record_class="report_files",
                start=datetime(2031, 1, 1, tzinfo=UTC), end=datetime(2031, 12, 31, tzinfo=UTC)), placer)


def test_certificates_of_destruction_outlive_the_report_files_policy_and_are_kept_by_default(app, runner,
                                                                                            make_user):
    officer = make_user("compliance", "privacy")
    report = stored_report(app, officer, datetime(2030, 3, 1, tzinfo=UTC))
    with app.app_context():
        job = ReportJob(kind="study_destruction", params={"run": 1}, status=ReportStatus.DONE, progress=100,
                        requested_by_id=officer.id, created_at=datetime(2030, 3, 1, tzinfo=UTC),
                        finished_at=datetime(2030, 3, 1, tzinfo=UTC), pdf=b"%PDF-1.7", pdf_size=8)
        db.session.add(job)
        db.session.flush()
        fixture_event("report", job.id)
        db.session.commit()
        certificate = job.id
        policy = retention.policy_for("destruction_certificates")
        assert policy is not None and policy.years == 100 and not policy.enabled
    enable_policy(app)
    with time_machine.travel(NOW, tick=False):
        run = runner.invoke(args=["retention", "run"])
        assert run.exit_code == 0, run.output
    assert remaining(app) == {certificate}, f"the report file {report} goes, the certificate stays"
