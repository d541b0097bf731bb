"""The scheduler runner: a database lease keeps runners (threads or processes) from overlapping."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import timedelta
from itertools import pairwise
from pathlib import Path

import pytest
from sqlalchemy import Column, Float, Integer, MetaData, String, Table, insert, select

from core import scheduler
from core.extensions import db
from core.scheduler import Job, JobLease, run_forever, run_pending
from core.timeutil import utcnow
from tests.conftest import PG_URL
from tests.helpers import require_postgres

ROOT = Path(__file__).resolve().parents[3]
PROBE = MetaData()
probe_table = Table("scheduler_probe", PROBE, Column("id", Integer, primary_key=True),
                    Column("run_id", String(40)), Column("event", String(10)),
                    Column("at", Float), Column("pid", Integer))


@pytest.fixture
def probe(app):
    """A table where test jobs write a row when they start and when they end."""
    with app.app_context():
        PROBE.create_all(db.engine)
    yield
    with app.app_context():
        db.session.remove()
        PROBE.drop_all(db.engine)


@pytest.fixture
def only_jobs(app):
    """Replace the app's registered jobs with the test's own."""

    def install(*jobs: Job) -> None:
        registered = scheduler.periodic_jobs(app)
        registered.clear()
        registered.update({job.name: job for job in jobs})

    return install


def write_probe(event: str, run_id: str) -> None:
    """Record a job's start or end (the job commits for itself)."""
    db.session.execute(insert(probe_table).values(run_id=run_id, event=event, at=time.time(),
                                                  pid=os.getpid()))
    db.session.commit()


def slow_job(seconds: float):
    """A job that writes start, works for ``seconds``, writes end."""

    def run() -> None:
        run_id = uuid.uuid4().hex
        write_probe("start", run_id)
        time.sleep(seconds)
        write_probe("end", run_id)

    return run


def runs(app) -> list[tuple[float, float, int]]:
    """(start, end, pid) of every finished run, by start time; fails on an unfinished run."""
    with app.app_context():
        rows = db.session.execute(select(probe_table)).mappings().all()
    spans: dict[str, dict] = {}
    for row in rows:
        spans.setdefault(row["run_id"], {"pid": row["pid"]})[row["event"]] = row["at"]
    assert all("end" in s for s in spans.values()), "a run started and never ended"
    return sorted((s["start"], s["end"], s["pid"]) for s in spans.values())


def wait_for_probes(app, event: str, count: int, timeout: float = 60) -> None:
    """Poll until ``count`` runs wrote ``event``; the deadline is reached only by a hang."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with app.app_context():
            rows = db.session.execute(select(probe_table.c.id)
                                      .where(probe_table.c.event == event)).all()
        if len(rows) >= count:
            return
        time.sleep(0.05)


def assert_no_overlap(spans: list[tuple[float, float, int]]) -> None:
    """Each run ended before the next one started."""
    for (_, end, _), (start, _, _) in pairwise(spans):
        assert end <= start, f"runs overlapped: {spans}"


def test_two_runner_threads_never_run_a_slow_job_at_once(app, probe, only_jobs):
    only_jobs(Job("test.slow", lambda app: 0, slow_job(0.3)))
    stop = threading.Event()
    started: list[threading.Thread] = []

    def runner(holder: str) -> None:
        while not stop.is_set():
            started.extend(run_pending(app, holder=holder))
            time.sleep(0.02)

    threads = [threading.Thread(target=runner, args=(h,)) for h in ("replica-a", "replica-b")]
    for thread in threads:
        thread.start()
    wait_for_probes(app, "end", 3)
    stop.set()
    for thread in threads:
        thread.join(10)
    for thread in started:
        thread.join(10)
    spans = runs(app)
    assert len(spans) >= 3
    assert_no_overlap(spans)


def test_a_job_runs_once_per_interval_whoever_asks(app, probe, only_jobs):
    only_jobs(Job("test.hourly", lambda app: 3600, slow_job(0.0)))
    for holder in ("replica-a", "replica-b", "replica-a", "replica-c"):
        for thread in run_pending(app, holder=holder):
            thread.join(5)
    assert len(runs(app)) == 1
    later = utcnow() + timedelta(hours=1, seconds=1)
    for thread in run_pending(app, now=later, holder="replica-b"):
        thread.join(5)
    assert len(runs(app)) == 2


def test_a_failing_job_is_recorded_and_the_runner_survives(app, only_jobs):
    def broken() -> None:
        raise RuntimeError("archive unreachable")

    only_jobs(Job("test.broken", lambda app: 0, broken))
    for thread in run_pending(app, holder="replica-a"):
        thread.join(5)
    with app.app_context():
        lease = db.session.get(JobLease, "test.broken")
        assert lease.last_status == "error"
        assert lease.last_error == "RuntimeError: archive unreachable"
        assert lease.lease_until is None and lease.last_finished_at is not None
    threads = run_pending(app, holder="replica-a")
    assert len(threads) == 1, "the next run still happens"
    threads[0].join(5)


def test_an_expired_lease_of_a_dead_runner_is_taken_over(app, probe, only_jobs):
    only_jobs(Job("test.slow", lambda app: 0, slow_job(0.0)))
    with app.app_context():
        db.session.add(JobLease(name="test.slow", holder="dead-replica",
                                lease_until=utcnow() + timedelta(seconds=30),
                                last_started_at=utcnow() - timedelta(minutes=1),
                                last_status="running"))
        db.session.commit()
    assert run_pending(app, holder="replica-a") == [], "a live lease is respected"
    later = utcnow() + timedelta(seconds=31)
    for thread in run_pending(app, now=later, holder="replica-a"):
        thread.join(5)
    assert len(runs(app)) == 1
    with app.app_context():
        lease = db.session.get(JobLease, "test.slow")
        assert lease.holder == "replica-a" and lease.last_status == "ok"


def test_run_forever_stops_on_request_after_its_running_job_ends(app, probe, only_jobs):
    only_jobs(Job("test.slow", lambda app: 3600, slow_job(0.5)))
    stop = threading.Event()
    runner = threading.Thread(target=run_forever, args=(app, stop))
    runner.start()
    wait_for_probes(app, "start", 1)
    stop.set()
    runner.join(10)
    assert not runner.is_alive()
    assert len(runs(app)) == 1, "the running job was allowed to finish"


SCHEDULER_SCRIPT = """
import sys, time, uuid, os
from sqlalchemy import text
from app import create_app
from core import scheduler
from core.extensions import db

url, instance = sys.argv[1], sys.argv[2]
app = create_app({"SQLALCHEMY_DATABASE_URI": url, "PACSDESK_INSTANCE_PATH": instance,
                  "SECRET_KEY": "test"})

def probe(event, run_id):
    db.session.execute(text("INSERT INTO scheduler_probe (run_id, event, at, pid) "
                            "VALUES (:r, :e, :t, :p)"),
                       {"r": run_id, "e": event, "t": time.time(), "p": os.getpid()})
    db.session.commit()

def slow():
    run_id = uuid.uuid4().hex
    probe("start", run_id)
    time.sleep(0.7)
    probe("end", run_id)

scheduler.periodic_jobs(app).clear()
scheduler.register_job(app, "test.slow", lambda app: 0, slow)
scheduler.TICK_SECONDS = 0.1
scheduler.run_forever(app)
"""


def wait_until_started(process: subprocess.Popen, timeout: float = 60) -> str:
    """Read a scheduler's log until it says it started; returns what it printed."""
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    seen = ""
    while "started with jobs" not in seen and time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        seen += line
    return seen


def run_two_scheduler_processes(app, database_url: str, tmp_path: Path) -> None:
    """Two scheduler processes poll for one slow job every 0.1 s until it ran 3 times, then stop."""
    processes = [
        subprocess.Popen([sys.executable, "-c", SCHEDULER_SCRIPT, database_url,
                          str(tmp_path / f"instance-{i}")], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for i in range(2)
    ]
    logs = [wait_until_started(process) for process in processes]
    assert all("test.slow" in log for log in logs), logs
    wait_for_probes(app, "end", 3)
    for process in processes:
        process.send_signal(signal.SIGTERM)
    for process, log in zip(processes, logs, strict=True):
        out, _ = process.communicate(timeout=30)
        assert process.returncode == 0, (log + out)[-3000:]
        assert "stopped" in out
    spans = runs(app)
    assert len(spans) >= 3, spans
    assert_no_overlap(spans)


def test_two_scheduler_processes_on_postgresql_never_overlap_a_slow_job(app, probe, database_url,
                                                                        tmp_path):
    require_postgres()
    run_two_scheduler_processes(app, database_url, tmp_path)


def test_two_scheduler_processes_on_sqlite_never_overlap_a_slow_job(app, probe, database_url,
                                                                    tmp_path):
    if PG_URL:
        pytest.skip("this run uses PostgreSQL: the PostgreSQL variant covers it")
    run_two_scheduler_processes(app, database_url, tmp_path)


def test_pacsdesk_scheduler_command_stops_cleanly_on_sigterm(database_url, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PACSDESK_")}
    env |= {"PACSDESK_DATABASE_URL": PG_URL or database_url,
            "PACSDESK_INSTANCE_PATH": str(tmp_path / "instance"),
            "PACSDESK_SECRET_KEY": "test-secret-key"}
    process = subprocess.Popen([sys.executable, "-m", "core.cli", "scheduler"], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = wait_until_started(process)
    assert "inventory.sweep" in seen, seen
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=30)
    assert process.returncode == 0, seen + out
    assert "stopped" in out
