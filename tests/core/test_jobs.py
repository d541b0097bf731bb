"""The job system: durable, retried with back-off, each job once, visible and controllable."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import time_machine
from sqlalchemy import Column, Integer, MetaData, String, Table, select

from core.extensions import db
from core.jobs import worker
from core.jobs.models import Job, JobStatus
from core.jobs.queue import cancel_job, enqueue, retry_job
from core.jobs.registry import JobKind, register_job
from core.timeutil import utcnow
from tests.helpers import require_postgres

ROOT = Path(__file__).resolve().parents[2]
PROBE = MetaData()
probe = Table("job_probe", PROBE, Column("id", Integer, primary_key=True), Column("job_id", Integer),
              Column("note", String(100)), Column("pid", Integer))


@pytest.fixture
def probe_table(app):
    """A table the test jobs write to (a job's visible effect)."""
    with app.app_context():
        PROBE.create_all(db.engine)
    yield
    with app.app_context():
        db.session.remove()
        PROBE.drop_all(db.engine)


def _probe_rows(app) -> list[tuple[int, str]]:
    with app.app_context():
        return [(r.job_id, r.note) for r in db.session.execute(select(probe).order_by(probe.c.id))]


def _write(ctx, note: str) -> None:
    db.session.execute(probe.insert().values(job_id=ctx.job_id, note=note, pid=os.getpid()))
    db.session.commit()


def _job(app, job_id: int) -> Job:
    with app.app_context():
        job = db.session.get(Job, job_id)
        db.session.expunge(job)
        return job


def _queue(app, kind: str, **kwargs) -> int:
    with app.app_context():
        job = enqueue(kind, **kwargs)
        db.session.commit()
        return job.id


def test_a_queued_job_runs_once_after_the_commit_and_keeps_its_result(app, probe_table, run_jobs):
    register_job(app, JobKind("test.write", "Write a row", lambda ctx: (_write(ctx, ctx.params["note"]),
                                                                      {"wrote": ctx.params["note"]})[1]))
    with app.app_context():
        enqueue("test.write", {"note": "rolled back"})
        db.session.rollback()
    job_id = _queue(app, "test.write", params={"note": "hello"})
    assert run_jobs() == [(job_id, JobStatus.DONE)]
    assert run_jobs() == []
    assert _probe_rows(app) == [(job_id, "hello")]
    job = _job(app, job_id)
    assert job.result == {"wrote": "hello"} and job.attempts == 1 and job.progress == 100


def test_a_failing_job_is_retried_with_back_off_then_fails_with_its_error(app, run_jobs):
    def broken(ctx):
        raise RuntimeError(f"archive unreachable (attempt {ctx.attempt})")

    register_job(app, JobKind("test.broken", "Always fails", broken, max_attempts=2, retry_delay=60))
    job_id = _queue(app, "test.broken")
    assert run_jobs() == [(job_id, JobStatus.QUEUED)]
    first = _job(app, job_id)
    assert first.error == "RuntimeError: archive unreachable (attempt 1)"
    assert timedelta(seconds=40) < first.run_after - utcnow() < timedelta(seconds=80)
    assert run_jobs() == [], "not due again before its back-off"
    with time_machine.travel(utcnow() + timedelta(minutes=2), tick=False):
        assert run_jobs() == [(job_id, JobStatus.FAILED)]
    failed = _job(app, job_id)
    assert failed.error == "RuntimeError: archive unreachable (attempt 2)" and failed.attempts == 2


def test_retry_later_waits_as_asked_and_a_permanent_failure_is_not_retried(app, run_jobs):
    def busy(ctx):
        raise worker.Retry("the archive is busy", delay=5)

    def refused(ctx):
        raise worker.Fail("the report period is longer than 10 years")

    register_job(app, JobKind("test.busy", "Busy", busy, max_attempts=5))
    register_job(app, JobKind("test.refused", "Refused", refused, max_attempts=5))
    busy_id, refused_id = _queue(app, "test.busy"), _queue(app, "test.refused")
    assert sorted(run_jobs()) == [(busy_id, JobStatus.QUEUED), (refused_id, JobStatus.FAILED)]
    assert _job(app, busy_id).run_after - utcnow() < timedelta(seconds=6)
    assert _job(app, refused_id).error == "the report period is longer than 10 years"


def test_a_dedup_key_gives_back_the_job_already_waiting(app):
    register_job(app, JobKind("test.noop", "Nothing", lambda ctx: None))
    with app.app_context():
        first = enqueue("test.noop", dedup_key="node:7")
        second = enqueue("test.noop", dedup_key="node:7")
        other = enqueue("test.noop", dedup_key="node:8")
        db.session.commit()
        assert first.id == second.id != other.id
        assert db.session.query(Job).count() == 2


def test_a_job_whose_worker_died_is_taken_over_and_never_lost(app, probe_table):
    register_job(app, JobKind("test.write", "Write a row", lambda ctx: _write(ctx, "second worker"),
                              max_attempts=2))
    job_id = _queue(app, "test.write")
    dead = worker.claim(app, "dead-worker", ["test.write"])
    assert dead is not None and dead.job_id == job_id
    assert worker.reap_expired(app) == 0, "a fresh lease is respected"
    later = utcnow() + timedelta(seconds=worker.LEASE_SECONDS + 1)
    with time_machine.travel(later, tick=False):
        assert worker.reap_expired(app) == 1
        assert "stopped responding" in _job(app, job_id).error
        assert worker.work_until_idle(app) == [(job_id, JobStatus.DONE)]
    assert _probe_rows(app) == [(job_id, "second worker")]
    assert worker.reap_expired(app) == 0


def test_a_job_out_of_attempts_when_its_worker_died_is_failed_not_dropped(app):
    register_job(app, JobKind("test.once", "Once", lambda ctx: None, max_attempts=1))
    job_id = _queue(app, "test.once")
    assert worker.claim(app, "dead-worker", ["test.once"]) is not None
    with time_machine.travel(utcnow() + timedelta(seconds=worker.LEASE_SECONDS + 1), tick=False):
        worker.reap_expired(app)
    job = _job(app, job_id)
    assert job.status == JobStatus.FAILED and "No attempts are left" in job.error


def test_cancel_a_queued_job_at_once_and_a_running_one_at_its_next_safe_point(app, run_jobs, make_user):
    register_job(app, JobKind("test.noop", "Nothing", lambda ctx: None))

    def long(ctx):
        with app.app_context():
            cancel_job(ctx.job_id)
            db.session.commit()
        if ctx.cancel_requested():
            raise worker.Cancelled("stopped between batches")

    register_job(app, JobKind("test.long", "Long", long))
    queued = _queue(app, "test.noop")
    with app.test_request_context():
        cancel_job(queued)
        db.session.commit()
    running = _queue(app, "test.long")
    assert run_jobs(["test.noop", "test.long"]) == [(running, JobStatus.CANCELLED)]
    assert _job(app, queued).status == JobStatus.CANCELLED
    with app.app_context():
        again = retry_job(running)
        db.session.commit()
        assert again.status == JobStatus.QUEUED and again.attempts == 0


def test_periodic_jobs_are_queued_once_per_interval_whoever_asks(app):
    register_job(app, JobKind("test.tick", "Tick", lambda ctx: None, every=lambda _app: 60.0))
    start = utcnow()
    with time_machine.travel(start, tick=False):
        assert "test.tick" in worker.schedule_periodic(app)
        assert "test.tick" not in worker.schedule_periodic(app), "a second worker queues nothing"
    with time_machine.travel(start + timedelta(seconds=61), tick=False):
        assert "test.tick" in worker.schedule_periodic(app)
    with app.app_context():
        assert db.session.query(Job).filter(Job.kind == "test.tick").count() == 1, \
            "the earlier one was still queued: its key kept a second from being added"


def test_jobs_page_shows_failures_with_their_error_and_lets_an_admin_retry(app, client, login_as,
                                                                          run_jobs, auth):
    def broken(ctx):
        raise worker.Fail("Orthanc answered 401: check the archive's credentials")

    register_job(app, JobKind("test.broken", "Delete studies on the archive", broken))
    job_id = _queue(app, "test.broken")
    run_jobs()
    login_as("technician")
    assert client.get("/admin/jobs").status_code == 403
    auth.logout()
    login_as("admin", "boss")
    page = client.get("/admin/jobs?status=failed").get_data(as_text=True)
    assert "Delete studies on the archive" in page and "check the archive&#39;s credentials" in page
    assert "No worker is running" in page
    assert client.post(f"/admin/jobs/{job_id}/retry").status_code == 302
    assert _job(app, job_id).status == JobStatus.QUEUED
    assert client.post(f"/admin/jobs/{job_id}/retry", follow_redirects=True).status_code == 200
    with app.app_context():
        from audit.trail.models import AuditEvent

        [event] = db.session.execute(select(AuditEvent).where(AuditEvent.action == "job.retried")).scalars()
        assert event.username == "boss" and event.object_id == str(job_id)
    assert client.get("/admin/jobs?status=nonsense").status_code == 400


WORKER_SCRIPT = """
import logging, os, sys, time
from sqlalchemy import text
from app import create_app
from core.extensions import db
from core.jobs import worker
from core.jobs.registry import JobKind, register_job

url, instance, hold, grace = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
worker.STOP_GRACE_SECONDS = grace
app = create_app({"SQLALCHEMY_DATABASE_URI": url, "PACSDESK_INSTANCE_PATH": instance, "SECRET_KEY": "t"})

def write(ctx):
    time.sleep(hold)
    db.session.execute(text("INSERT INTO job_probe (job_id, note, pid) VALUES (:j, 'ran', :p)"),
                       {"j": ctx.job_id, "p": os.getpid()})
    db.session.commit()

register_job(app, JobKind("test.write", "Write", write, max_attempts=3))
print("ready", flush=True)
logging.basicConfig(level=logging.INFO)
worker.Worker(app, threads=2).run_forever()
"""


def _start_worker(database_url: str, instance: Path, hold: float = 0.0,
                  grace: float = 25.0) -> subprocess.Popen:
    """A worker process (as `pacsdesk worker` runs) that knows the test's job kind."""
    process = subprocess.Popen([sys.executable, "-c", WORKER_SCRIPT, database_url, str(instance), str(hold),
                                str(grace)],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    return process


def _stop(process: subprocess.Popen) -> str:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    assert process.stdout is not None
    out = process.stdout.read()
    process.stdout.close()
    return out


def _wait_for(check, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def _each_job_once_by_two_workers(app, database_url: str, tmp_path: Path) -> None:
    register_job(app, JobKind("test.write", "Write", lambda ctx: None))
    ids = [_queue(app, "test.write") for _ in range(30)]
    workers = [_start_worker(database_url, tmp_path / f"w{i}", hold=0.05) for i in range(2)]
    try:
        _wait_for(lambda: len(_probe_rows(app)) >= 30, 120, "30 jobs to run")
    finally:
        outputs = [_stop(w) for w in workers]
    rows = _probe_rows(app)
    assert sorted(job_id for job_id, _ in rows) == ids, outputs
    with app.app_context():
        assert {j.status for j in db.session.query(Job).filter(Job.kind == "test.write")} == {JobStatus.DONE}


@pytest.mark.sqlite_only
def test_two_worker_processes_run_each_job_exactly_once_on_sqlite(app, probe_table, database_url, tmp_path):
    _each_job_once_by_two_workers(app, database_url, tmp_path)


@pytest.mark.postgres
def test_two_worker_processes_run_each_job_exactly_once_on_postgresql(app, probe_table, database_url,
                                                                     tmp_path):
    require_postgres()
    _each_job_once_by_two_workers(app, database_url, tmp_path)


def test_a_job_queued_while_no_worker_runs_and_one_whose_worker_was_killed_both_finish(
        app, probe_table, database_url, tmp_path):
    register_job(app, JobKind("test.write", "Write", lambda ctx: None))
    waiting = _queue(app, "test.write")
    slow = _start_worker(database_url, tmp_path / "slow", hold=60)
    _wait_for(lambda: _job(app, waiting).status == JobStatus.RUNNING, 30, "the job to start")
    slow.send_signal(signal.SIGKILL)
    _stop(slow)
    killed_at = time.monotonic()
    rescuer = _start_worker(database_url, tmp_path / "rescuer")
    try:
        _wait_for(lambda: _probe_rows(app), 40, "another worker to finish the job")
        taken_over_after = time.monotonic() - killed_at
    finally:
        _stop(rescuer)
    job = _job(app, waiting)
    assert job.status == JobStatus.DONE and job.attempts == 2
    assert taken_over_after < 15 + 5, f"taken over after {taken_over_after:.1f} s"


def test_the_worker_stops_on_sigterm_and_gives_back_a_job_it_could_not_finish(app, probe_table, database_url,
                                                                             tmp_path):
    register_job(app, JobKind("test.write", "Write", lambda ctx: None))
    job_id = _queue(app, "test.write")
    process = _start_worker(database_url, tmp_path / "w", hold=600, grace=1)
    _wait_for(lambda: _job(app, job_id).status == JobStatus.RUNNING, 30, "the job to start")
    process.send_signal(signal.SIGTERM)
    out = _stop(process)
    assert process.returncode == 0, out
    assert "1 unfinished jobs queued again" in out
    job = _job(app, job_id)
    assert job.status == JobStatus.QUEUED and job.attempts == 0 and job.lease_holder is None
