"""Chain verification runs: kept with their result, runnable from the page, a broken chain raises a banner."""

from __future__ import annotations

from sqlalchemy import select

from audit.trail.chain_verification import ChainVerificationRun, last_verification
from audit.trail.models import AuditEvent
from core.extensions import db
from core.jobs.registry import job_kinds
from tests.audit.compliance_fixtures import at, write_events


def runs(app) -> list[ChainVerificationRun]:
    with app.app_context():
        found = list(db.session.execute(select(ChainVerificationRun).order_by(ChainVerificationRun.id))
                     .scalars())
        db.session.expunge_all()
        return found


def test_cli_verify_keeps_a_run_and_exits_0_when_intact(app, runner):
    write_events(app, at(2026, 1), 3)
    outcome = runner.invoke(args=["audit", "verify"])
    assert outcome.exit_code == 0 and "intact: 3 events" in outcome.output
    (run,) = runs(app)
    assert run.ok and run.count == 3 and run.source == "cli" and run.head_seq == 3


def test_cli_verify_exits_1_naming_the_altered_event(app, runner, tamper):
    write_events(app, at(2026, 1), 4)
    tamper(2)
    outcome = runner.invoke(args=["audit", "verify"])
    assert outcome.exit_code == 1 and "BROKEN at event #2" in outcome.output
    (run,) = runs(app)
    assert not run.ok and run.first_bad_seq == 2 and "altered" in run.problem


def test_page_shows_last_verification_and_verifies_now(app, client, login_as, run_jobs):
    login_as("compliance", "privacy")
    assert "has not been verified yet" in client.get("/audit").get_data(as_text=True)
    response = client.post("/audit/verify", follow_redirects=True)
    waiting = response.get_data(as_text=True)
    assert "A verification of the chain is queued" in waiting and "data-refresh-seconds" in waiting
    assert "Verify the chain now" not in waiting, "no second verification while one waits"
    assert [status for _, status in run_jobs()] == ["done"]
    text = client.get("/audit").get_data(as_text=True)
    assert "Intact" in text and "data-refresh-seconds" not in text
    (run,) = runs(app)
    assert run.source == "web" and run.ok
    with app.app_context():
        event = db.session.execute(select(AuditEvent).where(AuditEvent.action == "audit.verify")).scalar_one()
        assert event.username == "privacy" and f'"run_id":{run.id}' in event.details


def test_broken_chain_banner_for_compliance_and_admin_until_acknowledged(app, client, auth, make_user,
                                                                         tamper, queue_job, run_jobs):
    officer = make_user("compliance", "privacy")
    make_user("admin", "boss")
    clerk = make_user("requester", "clerk")
    tamper(1)
    queue_job("audit.verify_chain")
    run_jobs()
    auth.login(clerk.username)
    assert "integrity check failed" not in client.get("/").get_data(as_text=True)
    auth.logout()
    auth.login("boss")
    home = client.get("/").get_data(as_text=True)
    assert "integrity check failed" in home and "broken at #1" in home
    auth.logout()
    auth.login(officer.username)
    assert "integrity check failed" in client.get("/training/mine").get_data(as_text=True)
    run_id = runs(app)[-1].id
    response = client.post(f"/audit/verifications/{run_id}/acknowledge", follow_redirects=True)
    assert "integrity check failed" not in response.get_data(as_text=True)
    again = client.post(f"/audit/verifications/{run_id}/acknowledge", follow_redirects=True)
    assert "already acknowledged" in again.get_data(as_text=True)
    with app.app_context():
        run = last_verification()
        assert run.acknowledged_by_id == officer.id and run.acknowledged_at is not None


def test_nightly_verification_job_is_registered_and_commits(app, queue_job, run_jobs):
    assert job_kinds(app)["audit.verify_chain"].every(app) == 24 * 3600
    write_events(app, at(2026, 1), 2)
    queue_job("audit.verify_chain")
    assert [status for _, status in run_jobs()] == ["done"]
    (run,) = runs(app)
    assert run.ok and run.source == "scheduler" and run.count == 2


def test_dashboard_panel_shows_last_verification_and_retention_run(app, client, login_as, run_jobs):
    login_as("compliance")
    client.post("/audit/verify")
    run_jobs()
    home = client.get("/").get_data(as_text=True)
    assert "Last chain verification" in home and "intact" in home and "Last retention run" in home
