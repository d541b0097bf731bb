"""Retention: floors, dry run equals run, legal holds, the run record, the guard against a second run."""

from __future__ import annotations

import dataclasses
import html
import json
import re
from datetime import timedelta

import pytest
import time_machine
from sqlalchemy import func, select

from audit.retention import engine as retention
from audit.retention import holds as legal_holds
from audit.retention.models import LegalHold, RetentionRun, RunStatus
from audit.retention.registry import record_classes
from audit.trail.chain import verify_chain
from audit.trail.models import AuditEvent
from core.auth.models import User
from core.extensions import db
from tests.audit.compliance_fixtures import NOW, at, remaining_test_records, write_events
from tests.helpers import fixture_event


def set_policy(app, key: str, years: int, months: int = 0, days: int = 0, anchor: str | None = None,
               enabled: bool = True) -> None:
    """Store a policy directly through the service."""
    with app.app_context():
        rc = record_classes(app)[key]
        retention.update_policy(key, years, months, days, anchor or rc.anchors[0], enabled)
        db.session.commit()


def event_count(app) -> int:
    with app.app_context():
        return db.session.execute(select(func.count()).select_from(AuditEvent)).scalar_one()


# ---------------------------------------------------------------- policies and floors


@pytest.mark.parametrize(("years", "message"), [
    (-1, "cannot be negative"),
    (500, "longer than 100 years"),
    (5, "45 CFR 164.316(b)(2)"),
])
def test_policy_form_refuses_negative_huge_and_below_floor_periods(app, client, login_as, years, message):
    login_as("compliance")
    response = client.post("/retention/policies/audit_events",
                           data={"years": years, "months": 0, "days": 0, "anchor": "created", "enabled": "y"})
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    with app.app_context():
        policy = retention.policy_for("audit_events")
        assert policy.years == 6 and not policy.enabled


def test_floor_cannot_be_dodged_with_months_or_days(app):
    rc = record_classes(app)["training_records"]
    assert retention.period_problem(rc, 5, 11, 30) is not None
    assert retention.period_problem(rc, 5, 12, 0) is None
    assert retention.period_problem(rc, 0, 72, 0) is None
    assert retention.period_problem(rc, 5, 0, 400) is None


def test_policy_change_is_saved_and_audited(app, client, login_as):
    login_as("compliance", "privacy")
    response = client.post("/retention/policies/audit_events",
                           data={"years": 7, "months": 0, "days": 0, "anchor": "created", "enabled": "y"})
    assert response.status_code == 302
    with app.app_context():
        policy = retention.policy_for("audit_events")
        assert (policy.years, policy.enabled) == (7, True)
        event = db.session.execute(select(AuditEvent).where(
            AuditEvent.action == "retention.policy_changed")).scalar_one()
        assert event.username == "privacy" and '"years":7' in event.details


def test_technician_cannot_open_retention(client, login_as):
    login_as("technician")
    assert client.get("/retention").status_code == 403
    assert client.get("/retention/run").status_code == 403


# ---------------------------------------------------------------- dry run and run


def test_dry_run_lists_exactly_what_the_run_purges(app, scratch_class, frozen):
    for n, year in enumerate([2020, 2021, 2024, 2030, 2035, 2036], start=1):
        scratch_class(f"T-{n}", at(year))
    set_policy(app, "test_records", 5)
    with app.app_context():
        plan = retention.dry_run()
    planned = {c.key: c for c in plan.classes}["test_records"]
    assert planned.count == 4
    assert planned.oldest.startswith("2020-01-01") and planned.newest.startswith("2030-01-01")
    assert remaining_test_records(app) == ["T-1", "T-2", "T-3", "T-4", "T-5", "T-6"]
    with app.app_context():
        report = retention.run_retention("tester")
    done = {c.key: c for c in report.classes}["test_records"]
    assert (done.count, done.digest) == (planned.count, planned.digest)
    assert report.digest == plan.digest
    assert remaining_test_records(app) == ["T-5", "T-6"]


def test_run_record_keeps_policies_counts_and_digest_of_destroyed_ids(app, scratch_class, frozen):
    ids = [scratch_class(f"T-{n}", at(2025, n)) for n in (1, 2)]
    scratch_class("T-young", at(2036))
    set_policy(app, "test_records", 2)
    with app.app_context():
        report = retention.run_retention("nightly-tester")
        run = db.session.get(RetentionRun, report.run_id)
        expected = retention.hashlib.sha256("".join(f"{i}\n" for i in sorted(ids)).encode()).hexdigest()
        assert run.status == RunStatus.COMPLETED
        assert run.started_by == "nightly-tester" and run.started_at == NOW
        assert run.counts == {"test_records": 2}
        assert run.class_digests["test_records"] == expected
        assert run.digest == retention.combined_digest({"test_records": expected})
        assert run.policies["test_records"]["years"] == 2
        actions = [a for (a,) in db.session.execute(select(AuditEvent.action).where(
            AuditEvent.action.like("retention.%")).order_by(AuditEvent.seq))]
    assert actions[-3:] == ["retention.run_started", "retention.batch_purged", "retention.run_completed"]


def test_disabled_policy_destroys_nothing(app, scratch_class, frozen):
    scratch_class("T-1", at(2000))
    set_policy(app, "test_records", 1, enabled=False)
    with app.app_context():
        report = retention.run_retention("tester")
    assert report.total == 0 and remaining_test_records(app) == ["T-1"]


def test_batches_each_commit_and_cover_every_record(app, scratch_class, frozen):
    for n in range(25):
        scratch_class(f"T-{n:02}", at(2020))
    set_policy(app, "test_records", 1)
    with app.app_context():
        plan = retention.dry_run(batch_size=7)
        report = retention.run_retention("tester", batch_size=7)
        batches = db.session.execute(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.action == "retention.batch_purged")).scalar_one()
    assert report.total == plan.total == 25 and report.digest == plan.digest
    assert batches == 4 and remaining_test_records(app) == []


def test_cli_dry_run_json_lists_counts_and_purges_nothing(app, runner, scratch_class, frozen):
    scratch_class("T-1", at(2020))
    set_policy(app, "test_records", 1)
    outcome = runner.invoke(args=["retention", "run", "--dry-run", "--json"])
    assert outcome.exit_code == 0, outcome.output
    data = json.loads(outcome.output)
    entry = next(c for c in data["classes"] if c["key"] == "test_records")
    assert data["dry_run"] is True and entry["count"] == 1 and entry["oldest"].startswith("2020")
    assert remaining_test_records(app) == ["T-1"]
    outcome = runner.invoke(args=["retention", "run"])
    assert outcome.exit_code == 0, outcome.output
    assert "destroyed 1" in outcome.output and remaining_test_records(app) == []


def plan_digest(page: str) -> str:
    """The dry run's digest the confirmation form carries."""
    return re.search(r'name="plan_digest" type="hidden" value="([0-9a-f]{64})"', page).group(1)


def confirmation(page: str) -> dict[str, str]:
    """The confirmation form's data for the dry run shown on ``page``."""
    as_of = re.search(r'name="plan_as_of" type="hidden" value="([^"]+)"', page).group(1)
    return {"confirm": "y", "plan_digest": plan_digest(page), "plan_as_of": html.unescape(as_of)}


def test_web_run_shows_the_dry_run_then_runs_on_confirmation(app, client, login_as, scratch_class, frozen,
                                                             run_jobs):
    scratch_class("T-1", at(2020))
    set_policy(app, "test_records", 1)
    login_as("compliance")
    page = client.get("/retention/run").get_data(as_text=True)
    assert "Test records" in page
    refused = client.post("/retention/run", data={"plan_digest": plan_digest(page)})
    assert refused.status_code == 200 and remaining_test_records(app) == ["T-1"]
    queued = client.post("/retention/run", data=confirmation(page))
    assert queued.status_code == 302 and remaining_test_records(app) == ["T-1"]
    waiting = client.get(queued.headers["Location"]).get_data(as_text=True)
    assert "waiting for the job worker" in waiting and "data-refresh-seconds" in waiting
    assert [status for _, status in run_jobs()] == ["done"]
    assert remaining_test_records(app) == []
    done = client.get(queued.headers["Location"])
    assert done.status_code == 302
    detail = client.get(done.headers["Location"]).get_data(as_text=True)
    assert "Records destroyed" in detail and "2020-01-01 to 2020-01-01" in detail


def test_web_run_refuses_when_the_records_due_changed_since_the_dry_run(app, client, login_as,
                                                                       scratch_class, frozen, run_jobs):
    scratch_class("T-1", at(2020))
    set_policy(app, "test_records", 1)
    login_as("compliance")
    page = client.get("/retention/run").get_data(as_text=True)
    scratch_class("T-2", at(2021))
    queued = client.post("/retention/run", data=confirmation(page))
    run_jobs()
    response = client.get(queued.headers["Location"])
    assert "changed since the dry run" in response.get_data(as_text=True)
    assert remaining_test_records(app) == ["T-1", "T-2"]


def test_a_confirmed_run_keeps_the_dry_runs_cutoff_and_spares_what_aged_since(app, client, login_as,
                                                                             scratch_class, frozen, run_jobs):
    scratch_class("T-OLD", NOW - timedelta(days=400))
    scratch_class("T-AGING", NOW - timedelta(days=365) + timedelta(minutes=5))
    set_policy(app, "test_records", 1)
    login_as("compliance")
    page = client.get("/retention/run").get_data(as_text=True)
    frozen.move_to(NOW + timedelta(minutes=10))   # T-AGING passes its year while the officer reads
    client.post("/retention/run", data=confirmation(page))
    assert [status for _, status in run_jobs()] == ["done"]
    assert remaining_test_records(app) == ["T-AGING"], "only what the dry run showed is destroyed"


def test_a_confirmation_of_a_dry_run_from_yesterday_is_refused(app, client, auth, login_as, scratch_class,
                                                                frozen):
    scratch_class("T-1", at(2020))
    set_policy(app, "test_records", 1)
    officer = login_as("compliance")
    page = client.get("/retention/run").get_data(as_text=True)
    frozen.move_to(NOW + timedelta(days=2))
    assert auth.login(officer.username).status_code == 302
    response = client.post("/retention/run", data=confirmation(page), follow_redirects=True)
    assert "too old" in response.get_data(as_text=True)
    assert remaining_test_records(app) == ["T-1"]


# ---------------------------------------------------------------- concurrency guard


def test_second_run_is_refused_naming_the_running_one(app, runner, scratch_class, frozen):
    scratch_class("T-1", at(2020))
    set_policy(app, "test_records", 1)
    with app.app_context():
        db.session.add(RetentionRun(status="running", started_by="other-replica", started_at=NOW,
                                    heartbeat_at=NOW))
        fixture_event("retention_run", 1)
        db.session.commit()
        running = retention.running_run().id
        with pytest.raises(retention.RetentionBusy, match=f"#{running} .* by other-replica"):
            retention.run_retention("tester")
    outcome = runner.invoke(args=["retention", "run"])
    assert outcome.exit_code != 0 and f"Retention run #{running}" in outcome.output
    assert remaining_test_records(app) == ["T-1"]


def test_the_database_refuses_two_running_runs(app):
    from sqlalchemy.exc import IntegrityError

    with app.app_context():
        db.session.add(RetentionRun(status="running", started_by="a"))
        fixture_event("retention_run", 1)
        db.session.commit()
        db.session.add(RetentionRun(status="running", started_by="b"))
        with pytest.raises(IntegrityError):
            db.session.commit()
        db.session.rollback()


def test_a_run_with_no_progress_for_30_minutes_is_taken_over(app, scratch_class, frozen):
    scratch_class("T-1", at(2020))
    set_policy(app, "test_records", 1)
    with app.app_context():
        db.session.add(RetentionRun(status="running", started_by="crashed", started_at=at(2036, 6, 15, 10),
                                    heartbeat_at=at(2036, 6, 15, 10)))
        fixture_event("retention_run", 1)
        db.session.commit()
        report = retention.run_retention("tester")
        statuses = dict(db.session.execute(select(RetentionRun.started_by, RetentionRun.status)).all())
    assert report.total == 1 and statuses == {"crashed": "abandoned", "tester": "completed"}


# ---------------------------------------------------------------- legal holds


def test_held_record_survives_and_is_counted_as_held(app, client, login_as, scratch_class, frozen):
    scratch_class("T-1", at(2026))
    scratch_class("T-2", at(2026))
    set_policy(app, "test_records", 1)
    login_as("compliance", "privacy")
    response = client.post("/retention/holds/new", data={"reason": "Litigation 2036-14", "kind": "ticket",
                                                         "object_key": "T-1"})
    assert response.status_code == 302, response.get_data(as_text=True)
    with app.app_context():
        plan = retention.dry_run()
        report = retention.run_retention("tester")
    entry = {c.key: c for c in report.classes}["test_records"]
    assert (entry.count, entry.held) == (1, 1) and plan.digest == report.digest
    assert remaining_test_records(app) == ["T-1"]


def test_hold_that_matches_nothing_is_refused(app, client, login_as, scratch_class):
    login_as("compliance")
    for data in ({"kind": "ticket", "object_key": "T-404"}, {"kind": "user", "object_key": "nobody"},
                 {"kind": "class", "record_class": "test_records", "start": "1990-01-01",
                  "end": "1990-12-31"}):
        response = client.post("/retention/holds/new", data={"reason": "Case", **data})
        assert response.status_code == 422, data
        assert "matches no record" in response.get_data(as_text=True) or "no user" in \
            response.get_data(as_text=True)
    with app.app_context():
        assert db.session.execute(select(func.count()).select_from(LegalHold)).scalar_one() == 0


def test_hold_release_is_recorded_and_a_second_release_refused(app, client, login_as):
    user = login_as("compliance", "privacy")
    client.post("/retention/holds/new", data={"reason": "Audit", "kind": "user", "object_key": "privacy"})
    with app.app_context():
        hold_id = db.session.execute(select(LegalHold.id)).scalar_one()
    first = client.post(f"/retention/holds/{hold_id}/release", data={"reason": "Case closed"},
                        follow_redirects=True)
    assert f"Legal hold #{hold_id} released" in first.get_data(as_text=True)
    assert "by privacy — Case closed" in first.get_data(as_text=True)
    second = client.post(f"/retention/holds/{hold_id}/release", data={"reason": "Again"},
                         follow_redirects=True)
    assert "already released" in second.get_data(as_text=True)
    with app.app_context():
        hold = db.session.get(LegalHold, hold_id)
        assert hold.released_by_id == user.id and hold.release_reason == "Case closed"
        releases = db.session.execute(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.action == "retention.hold_released")).scalar_one()
    assert releases == 1


def test_released_hold_no_longer_protects(app, scratch_class, frozen, make_user):
    scratch_class("T-1", at(2026))
    set_policy(app, "test_records", 1)
    officer = make_user("compliance", "privacy")
    with app.app_context():
        officer = db.session.get(User, officer.id)
        hold = legal_holds.place_hold(legal_holds.NewHold(reason="Case", kind="class",
                                                      record_class="test_records"), officer)
        legal_holds.release_hold(hold.id, "done", officer)
        db.session.commit()
        assert retention.run_retention("tester").total == 1


# ---------------------------------------------------------------- the audit trail itself


def test_audit_purge_keeps_the_chain_verifiable_and_tampering_still_fails(app, runner, tamper, frozen):
    write_events(app, at(2026, 1), 5)
    write_events(app, at(2031, 1), 3)
    set_policy(app, "audit_events", 6)
    with app.app_context():
        plan = retention.dry_run()
        report = retention.run_retention("tester")
        first = db.session.execute(select(func.min(AuditEvent.seq))).scalar_one()
    entry = {c.key: c for c in report.classes}["audit_events"]
    assert entry.count == 5 and report.digest == plan.digest and first == 6
    outcome = runner.invoke(args=["audit", "verify"])
    assert outcome.exit_code == 0, outcome.output
    tamper(7)
    outcome = runner.invoke(args=["audit", "verify", "--full"])
    assert outcome.exit_code == 1 and "#7" in outcome.output


def test_held_audit_event_stops_the_purge_at_its_position(app, make_user, frozen):
    write_events(app, at(2026, 1), 3)
    write_events(app, at(2026, 2), 1, object_type="ticket", object_id="HD-000042")
    write_events(app, at(2026, 3), 3)
    set_policy(app, "audit_events", 6)
    officer = make_user("compliance", "privacy")
    with app.app_context():
        officer = db.session.get(User, officer.id)
        legal_holds.place_hold(legal_holds.NewHold(reason="Case", kind="ticket", object_key="HD-000042"),
                             officer)
        db.session.commit()
        plan = retention.dry_run()
        report = retention.run_retention("tester")
        kept = db.session.execute(select(AuditEvent.seq).where(AuditEvent.object_id == "HD-000042")).all()
        assert verify_chain().ok
    entry = {c.key: c for c in report.classes}["audit_events"]
    assert entry.count == 3 and entry.held == 4 and plan.digest == report.digest and len(kept) == 1


def test_nightly_retention_job_commits_and_skips_when_busy(app, scratch_class, frozen, queue_job, run_jobs):
    from core.jobs.models import Job
    from core.jobs.registry import job_kinds

    scratch_class("T-1", at(2020))
    set_policy(app, "test_records", 1)
    assert job_kinds(app)["audit.retention"].every(app) == 24 * 3600
    first = queue_job("audit.retention")
    assert [status for _, status in run_jobs()] == ["done"]
    assert remaining_test_records(app) == []
    with app.app_context():
        assert db.session.get(Job, first).result["destroyed"] == 1
        running = RetentionRun(status="running", started_by="x", started_at=NOW, heartbeat_at=NOW)
        db.session.add(running)
        db.session.flush()
        fixture_event("retention_run", running.id)
        db.session.commit()
    second = queue_job("audit.retention")
    assert [status for _, status in run_jobs()] == ["done"]
    with app.app_context():
        assert "is still running" in db.session.get(Job, second).result["skipped"]


def test_held_ticket_ten_years_old_survives(app, make_user, frozen):
    helpdesk = pytest.importorskip("helpdesk.services")
    from helpdesk.models import Category

    if "closed_tickets" not in record_classes(app):
        pytest.skip("the help desk registers no closed_tickets class")
    technician = make_user("technician", "tech")
    requester = make_user("requester", "req")
    numbers = []
    with time_machine.travel(at(2026, 3), tick=False), app.app_context():
        category = db.session.execute(select(Category.id)).scalars().first()
        for title in ("Old held", "Old free"):
            ticket = helpdesk.create_ticket(helpdesk.NewTicket(title=title, description="d",
                                            category_id=category, impact="one", urgency="hours"),
                                            db.session.get(User, requester.id))
            helpdesk.update_ticket(ticket, db.session.get(User, technician.id), status="closed")
            numbers.append(ticket.number)
        db.session.commit()
    set_policy(app, "closed_tickets", 7, anchor="closed")
    officer = make_user("compliance", "privacy")
    with app.app_context():
        legal_holds.place_hold(legal_holds.NewHold(reason="Lawsuit", kind="ticket", object_key=numbers[0]),
                             db.session.get(User, officer.id))
        db.session.commit()
        report = retention.run_retention("tester")
        from helpdesk.models import Ticket

        left = [t.number for t in db.session.execute(select(Ticket)).scalars()]
    assert {c.key: c.count for c in report.classes}["closed_tickets"] == 1
    assert left == [numbers[0]]


def test_retention_pages_render_for_compliance(app, client, login_as):
    login_as("compliance")
    for url in ("/retention", "/retention/holds/new", "/retention/policies/audit_events", "/retention/run"):
        response = client.get(url)
        assert response.status_code == 200, url
    assert client.get("/retention/policies/no_such_class").status_code == 404
    assert client.get("/retention/runs/999").status_code == 404


@pytest.mark.postgres
def test_concurrent_runs_on_postgres_one_runs_the_other_is_refused(app, scratch_class, frozen):
    import threading

    from tests.audit import compliance_fixtures
    from tests.helpers import require_postgres

    require_postgres()
    scratch_class("T-1", at(2020))
    set_policy(app, "test_records", 1)
    entered, release = threading.Event(), threading.Event()
    original = compliance_fixtures._purge
    outcome: dict[str, object] = {}

    def slow_purge(ids):
        entered.set()
        release.wait(10)
        return original(ids)

    record_classes(app)["test_records"] = dataclasses.replace(
        record_classes(app)["test_records"], purge=slow_purge)

    def first() -> None:
        with app.app_context():
            outcome["first"] = retention.run_retention("replica-a").total

    thread = threading.Thread(target=first)
    thread.start()
    assert entered.wait(10)
    with app.app_context(), pytest.raises(retention.RetentionBusy, match="by replica-a"):
        retention.run_retention("replica-b")
    release.set()
    thread.join(10)
    assert outcome["first"] == 1 and remaining_test_records(app) == []


def test_policies_command_lists_classes_with_floors(runner):
    outcome = runner.invoke(args=["retention", "policies"])
    assert outcome.exit_code == 0
    assert "audit_events" in outcome.output and "(floor 6 years)" in outcome.output
    assert "not enforced" in outcome.output
