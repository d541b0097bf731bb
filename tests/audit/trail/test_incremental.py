"""Incremental verification, `--full`, `--against`, the hourly and nightly jobs, a full disk."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy import event, select
from sqlalchemy.engine import make_url

from audit import record
from audit.trail.models import AuditEvent, ChainVerificationRun
from core.extensions import db
from core.jobs.registry import job_kinds


def append(app, n: int) -> None:
    """Append ``n`` events, each in its own transaction."""
    with app.app_context():
        for i in range(n):
            record("test.event", object_type="thing", object_id=i, details={"i": i})
            db.session.commit()


def runs(app) -> list[ChainVerificationRun]:
    """Every verification run, oldest first."""
    with app.app_context():
        found = list(db.session.execute(select(ChainVerificationRun).order_by(ChainVerificationRun.id))
                     .scalars())
        db.session.expunge_all()
        return found


def test_verification_continues_from_the_last_verified_head(app, runner):
    append(app, 100)
    first = runner.invoke(args=["audit", "verify"])
    assert first.exit_code == 0 and "intact: 100 events, head #100" in first.output
    append(app, 10)
    second = runner.invoke(args=["audit", "verify"])
    assert second.exit_code == 0, second.output
    assert "intact: 111 events, head #111" in second.output
    assert "(incremental: 12 events walked from #100)" in second.output
    done = runs(app)
    assert [(r.mode, r.from_seq, r.walked, r.count) for r in done] == \
        [("full", 1, 100, 100), ("incremental", 100, 12, 111)]
    full = runner.invoke(args=["audit", "verify", "--full"])
    assert full.exit_code == 0 and "intact: 112 events, head #112" in full.output
    assert runs(app)[-1].walked == 112


def test_an_event_altered_below_the_verified_head_is_found_by_the_full_walk(app, runner, tamper):
    append(app, 10)
    assert runner.invoke(args=["audit", "verify"]).exit_code == 0
    tamper(5)
    assert runner.invoke(args=["audit", "verify"]).exit_code == 0, "only new events are walked"
    outcome = runner.invoke(args=["audit", "verify", "--full"])
    assert outcome.exit_code == 1
    assert "BROKEN at event #5: event #5 was altered or forged" in outcome.output


def test_a_head_hash_printed_earlier_is_checked_with_against(app, runner):
    append(app, 5)
    with app.app_context():
        printed = db.session.execute(select(AuditEvent.hash).where(AuditEvent.seq == 3)).scalar_one()
    assert runner.invoke(args=["audit", "verify"]).exit_code == 0
    append(app, 5)
    outcome = runner.invoke(args=["audit", "verify", "--against", printed.upper()])
    assert outcome.exit_code == 0, outcome.output
    assert f"head hash {printed} is event #3, still in the trail" in outcome.output
    assert "(incremental: 9 events walked from #3)" in outcome.output
    unknown = runner.invoke(args=["audit", "verify", "--against", "ab" * 32])
    assert unknown.exit_code == 1
    assert f"no event in the trail has the hash {'ab' * 32}" in unknown.output
    malformed = runner.invoke(args=["audit", "verify", "--against", "6c1f..."])
    assert malformed.exit_code == 2 and "--against" in malformed.output
    assert "64 hexadecimal digits" in malformed.output


FILLER_RUN = ("INSERT INTO audit_chain_verification (started_at, finished_at, source, count, ok, "
              "head_seq, head_hash, mode) VALUES ('2026-01-01 00:00:00.000000', "
              "'2026-01-01 00:00:00.000000', 'filler', 0, 0, 0, '', 'full')")


@pytest.mark.sqlite_only  # a full disk is made with SQLite's page limit
def test_a_full_database_still_shows_the_state_before_failing_to_record_it(app, runner):
    append(app, 20)
    path = make_url(app.config["SQLALCHEMY_DATABASE_URI"]).database
    with app.app_context():
        db.engine.dispose()
    direct = sqlite3.connect(path, isolation_level=None)
    pages = direct.execute("PRAGMA page_count").fetchone()[0]
    direct.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(sqlite3.OperationalError, match="database or disk is full"):
        while True:  # fill the runs table's last page with runs smaller than a real one
            direct.execute(FILLER_RUN)
    direct.close()

    def no_room(dbapi_connection, _record) -> None:
        dbapi_connection.execute(f"PRAGMA max_page_count = {pages}")

    with app.app_context():
        event.listen(db.engine, "connect", no_room)
    try:
        outcome = runner.invoke(args=["audit", "verify"])
    finally:
        with app.app_context():
            event.remove(db.engine, "connect", no_room)
            db.engine.dispose()
    assert outcome.exit_code == 2
    lines = outcome.output.splitlines()
    assert lines[0].startswith("audit trail intact: 20 events, head #20")
    assert "the verification could not be recorded in the database: database or disk is full" \
        in outcome.output
    assert [run.source for run in runs(app) if run.source != "filler"] == []


def test_the_hourly_job_anchors_new_events_and_skips_when_there_are_none(app, queue_job, run_jobs):
    kinds = job_kinds(app)
    assert kinds["audit.anchor_chain"].every(app) == 3600
    assert kinds["audit.verify_chain"].every(app) == 24 * 3600
    append(app, 30)
    queue_job("audit.verify_chain")
    queue_job("audit.anchor_chain")
    assert [status for _, status in run_jobs()] == ["done", "done"]
    append(app, 3)
    queue_job("audit.anchor_chain")
    run_jobs()
    queue_job("audit.anchor_chain")
    run_jobs()
    done = runs(app)
    assert [(r.source, r.mode, r.from_seq, r.walked, r.anchor_n) for r in done] == [
        ("scheduler", "full", 1, 30, 1),
        ("scheduler", "incremental", 30, 5, 2),
    ], "the first hourly run found only the nightly run's own event and skipped"
    with app.app_context():
        from core.jobs.models import Job

        results = [job.result for job in db.session.execute(
            select(Job).where(Job.kind == "audit.anchor_chain").order_by(Job.id)).scalars()]
    assert results[0] == {"skipped": "no events since the last anchor"}
    assert results[1]["walked"] == 5 and results[1]["anchor_n"] == 2
    assert results[2] == {"skipped": "no events since the last anchor"}
