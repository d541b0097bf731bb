"""The worker: claims queued jobs under a lease, runs them in threads, retries with back-off.

A claim is one conditional UPDATE (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite's single
writer serialises it), so with several workers on several replicas each job runs once. A
running job's lease is renewed every few seconds; a worker that dies stops renewing, and
any other worker puts the job back in the queue (or fails it after its last attempt) once
the lease has expired, so nothing is lost silently. Every state change of a job is a short
transaction of its own: no job holds SQLite's write lock while its handler works.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from flask import Flask
from sqlalchemy import insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError

from core.config import JOB_THREADS
from core.database import rowcount
from core.extensions import db
from core.jobs.models import Job, JobSchedule, JobStatus, JobWorker
from core.jobs.queue import enqueue
from core.jobs.registry import JobKind, job_kinds, periodic_kinds
from core.timeutil import utcnow

log = logging.getLogger("pacsdesk.jobs")

LEASE_SECONDS = 10.0      # a dead worker's job is taken over at most this long after its last renewal
RENEW_EVERY = 3.0         # leases, heartbeats, take-overs and the schedule are looked at this often
TICK_SECONDS = 0.5        # how often the worker looks for work
STOP_GRACE_SECONDS = 25.0 # how long a stopping worker lets running jobs finish
MAX_BACKOFF = 3600.0


class Retry(Exception):
    """Raised by a handler for a transient failure: try again after ``delay`` seconds (or the back-off)."""

    def __init__(self, message: str, delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay


class Fail(Exception):
    """Raised by a handler for a permanent failure: no retry; the message is shown on the Jobs page."""


class Cancelled(Exception):
    """Raised by a handler that saw ``cancel_requested()`` and stopped at a safe point."""


def new_holder() -> str:
    """A name for this worker that no other process shares."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _write(app: Flask, statement: Any) -> int:
    """Run one statement in a short transaction of its own; returns the rows it touched."""
    with app.app_context(), db.engine.begin() as connection:
        return int(connection.execute(statement).rowcount or 0)


def backoff(kind: JobKind, attempts: int) -> float:
    """Seconds before the next attempt: doubling from the kind's delay, capped, with jitter."""
    delay = min(kind.retry_delay * 2 ** max(attempts - 1, 0), MAX_BACKOFF)
    return delay * random.uniform(0.8, 1.2)


@dataclass
class _Context:
    """A running job's view of itself (see ``core.jobs.registry.JobContext``)."""

    app: Flask
    holder: str
    job_id: int
    params: dict[str, Any]
    user_id: int | None
    attempt: int
    _last_progress: float = field(default=0.0)

    def progress(self, percent: int, stage: str) -> None:
        """Record progress in a transaction of its own (call it with no write transaction open)."""
        now = time.monotonic()
        if percent < 100 and now - self._last_progress < 0.5:
            return
        self._last_progress = now
        _write(self.app, update(Job).where(Job.id == self.job_id, Job.lease_holder == self.holder)
               .values(progress=max(0, min(int(percent), 100)), stage=stage[:200]))

    def cancel_requested(self) -> bool:
        """Whether someone asked to cancel this job."""
        with self.app.app_context(), db.engine.connect() as connection:
            return bool(connection.execute(
                select(Job.cancel_requested).where(Job.id == self.job_id)).scalar())


# ---------------------------------------------------------------- state changes


def reap_expired(app: Flask, now: datetime | None = None) -> int:
    """Put back (or fail, after the last attempt) running jobs whose worker stopped renewing."""
    now = now or utcnow()
    expired = (Job.status == JobStatus.RUNNING, Job.lease_until < now)
    lost = "The worker running it stopped responding (its lease expired)."
    cancelled = _write(app, update(Job).where(*expired, Job.cancel_requested.is_(True)).values(
        status=JobStatus.CANCELLED, finished_at=now, lease_holder=None, lease_until=None, error=lost))
    requeued = _write(app, update(Job).where(*expired, Job.attempts < Job.max_attempts).values(
        status=JobStatus.QUEUED, run_after=now, lease_holder=None, lease_until=None, error=lost))
    failed = _write(app, update(Job).where(*expired).values(
        status=JobStatus.FAILED, finished_at=now, lease_holder=None, lease_until=None,
        error=lost + " No attempts are left."))
    if requeued or failed or cancelled:
        log.warning("took over %d jobs of a stopped worker (%d queued again, %d failed)",
                    requeued + failed + cancelled, requeued, failed)
    return requeued + failed + cancelled


def schedule_periodic(app: Flask, now: datetime | None = None) -> list[str]:
    """Queue each periodic job that is due; one conditional update decides among replicas."""
    now = now or utcnow()
    queued = []
    with app.app_context():
        insert_ = pg_insert if db.engine.dialect.name == "postgresql" else sqlite_insert
        for kind in periodic_kinds(app):
            assert kind.every is not None
            every = timedelta(seconds=float(kind.every(app)))
            try:
                db.session.execute(insert_(JobSchedule).values(name=kind.name).on_conflict_do_nothing())
                taken = rowcount(db.session.execute(
                    update(JobSchedule).where(
                        JobSchedule.name == kind.name,
                        (JobSchedule.last_queued_at.is_(None)) | (JobSchedule.last_queued_at <= now - every))
                    .values(last_queued_at=now).execution_options(synchronize_session=False)))
                if taken == 1:
                    enqueue(kind.name, dedup_key=f"periodic:{kind.name}")
                    queued.append(kind.name)
                db.session.commit()
            except Exception:
                db.session.rollback()
                log.exception("could not queue the periodic job %s", kind.name)
        db.session.remove()
    return queued


def claim(app: Flask, holder: str, kinds: list[str], now: datetime | None = None) -> _Context | None:
    """Take the next due job of one of ``kinds`` under a lease, or None."""
    if not kinds:
        return None
    now = now or utcnow()
    with app.app_context():
        try:
            pick = (select(Job.id).where(Job.status == JobStatus.QUEUED, Job.run_after <= now,
                                         Job.kind.in_(kinds))
                    .order_by(Job.priority, Job.id).limit(1).with_for_update(skip_locked=True)
                    .scalar_subquery())
            job_id = db.session.execute(
                update(Job).where(Job.id == pick, Job.status == JobStatus.QUEUED)
                .values(status=JobStatus.RUNNING, lease_holder=holder,
                        lease_until=now + timedelta(seconds=LEASE_SECONDS), started_at=now,
                        attempts=Job.attempts + 1, progress=0, stage="Starting")
                .returning(Job.id).execution_options(synchronize_session=False)).scalar()
            if job_id is None:
                db.session.rollback()
                return None
            job = db.session.get(Job, job_id)
            assert job is not None
            context = _Context(app, holder, job.id, dict(job.params or {}), job.created_by_id, job.attempts)
            db.session.commit()
            return context
        except Exception:
            db.session.rollback()
            log.exception("could not claim a job")
            return None
        finally:
            db.session.remove()


def _finish(app: Flask, ctx: _Context, status: JobStatus, *, error: str | None = None,
            result: dict[str, Any] | None = None) -> None:
    """Record how the attempt ended, if the job is still ours."""
    _write(app, update(Job).where(Job.id == ctx.job_id, Job.lease_holder == ctx.holder)
           .values(status=status, finished_at=utcnow(), lease_holder=None, lease_until=None,
                   error=error, result=result, progress=100 if status == JobStatus.DONE else Job.progress,
                   stage="Finished" if status == JobStatus.DONE else Job.stage))


def _again(app: Flask, ctx: _Context, kind: JobKind, error: str, delay: float | None) -> JobStatus:
    """Queue the job for another attempt after a delay, or fail it when none is left."""
    wait = backoff(kind, ctx.attempt) if delay is None else delay
    again = _write(app, update(Job).where(Job.id == ctx.job_id, Job.lease_holder == ctx.holder,
                                          Job.attempts < Job.max_attempts)
                   .values(status=JobStatus.QUEUED, run_after=utcnow() + timedelta(seconds=wait),
                           lease_holder=None, lease_until=None, error=error,
                           stage=f"Waiting to try again ({error[:120]})"))
    if again:
        return JobStatus.QUEUED
    _finish(app, ctx, JobStatus.FAILED, error=error)
    return JobStatus.FAILED


def execute(app: Flask, ctx: _Context) -> JobStatus:
    """Run a claimed job's handler and record the outcome; never raises."""
    kind = job_kinds(app).get(_kind_of(app, ctx.job_id))
    if kind is None:
        _finish(app, ctx, JobStatus.FAILED, error="No handler is registered for this kind of job.")
        return JobStatus.FAILED
    started = time.monotonic()
    with app.app_context():
        try:
            result = kind.handler(ctx)
            db.session.rollback()
            status = JobStatus.DONE
            _finish(app, ctx, status, result=result)
        except Cancelled:
            db.session.rollback()
            status = JobStatus.CANCELLED
            _finish(app, ctx, status, error="Cancelled while it ran.")
        except Fail as failure:
            db.session.rollback()
            status = JobStatus.FAILED
            _finish(app, ctx, status, error=str(failure)[:2000])
        except Retry as transient:
            db.session.rollback()
            status = _again(app, ctx, kind, str(transient)[:2000], transient.delay)
        except Exception as exc:
            log.exception("job #%s (%s) failed", ctx.job_id, kind.name)
            db.session.rollback()
            status = _again(app, ctx, kind, failure_text(exc)[:2000], None)
        finally:
            db.session.remove()
    log.info("job #%s (%s) %s after %.1f s", ctx.job_id, kind.name, status.value,
             time.monotonic() - started)
    return status


def failure_text(exc: Exception) -> str:
    """A failed job's message for people: for a database error, the database's own words, not the SQL."""
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        return f"Database error ({type(exc.orig).__name__}): {exc.orig}"
    return f"{type(exc).__name__}: {exc}"


def _kind_of(app: Flask, job_id: int) -> str:
    """The kind of job ``job_id``."""
    with app.app_context(), db.engine.connect() as connection:
        return str(connection.execute(select(Job.kind).where(Job.id == job_id)).scalar())


def renew(app: Flask, holder: str, job_ids: list[int]) -> None:
    """Push the leases of our running jobs and our heartbeat forward."""
    now = utcnow()
    if job_ids:
        _write(app, update(Job).where(Job.id.in_(job_ids), Job.lease_holder == holder)
               .values(lease_until=now + timedelta(seconds=LEASE_SECONDS)))
    _write(app, update(JobWorker).where(JobWorker.id == holder).values(heartbeat_at=now))


def release(app: Flask, holder: str, job_ids: list[int]) -> int:
    """Give back jobs a stopping worker could not finish, for another worker to run at once."""
    if not job_ids:
        return 0
    return _write(app, update(Job).where(Job.id.in_(job_ids), Job.lease_holder == holder,
                                         Job.status == JobStatus.RUNNING)
                  .values(status=JobStatus.QUEUED, run_after=utcnow(), lease_holder=None,
                          lease_until=None, attempts=Job.attempts - 1,
                          stage="Interrupted by a worker stopping; queued again"))


# ---------------------------------------------------------------- running


def work_until_idle(app: Flask, kinds: list[str] | None = None,
                    limit: int = 1000) -> list[tuple[int, JobStatus]]:
    """Run due jobs one after another in this thread until none is left (tests, `pacsdesk jobs run`)."""
    holder = new_holder()
    names = kinds or list(job_kinds(app))
    done: list[tuple[int, JobStatus]] = []
    reap_expired(app)
    while len(done) < limit:
        ctx = claim(app, holder, names)
        if ctx is None:
            break
        done.append((ctx.job_id, execute(app, ctx)))
    return done


class Worker:
    """A worker process's loop: reap, schedule, claim, run in threads, renew, stop gracefully."""

    def __init__(self, app: Flask, threads: int = JOB_THREADS) -> None:
        self.app = app
        self.threads = max(1, threads)
        self.holder = new_holder()
        self.running: dict[int, tuple[threading.Thread, str]] = {}
        self.stop = threading.Event()

    def _register(self) -> None:
        """Record this worker (the Jobs page lists live workers)."""
        now = utcnow()
        _write(self.app, insert(JobWorker).values(id=self.holder, hostname=socket.gethostname(),
                                                  pid=os.getpid(), started_at=now, heartbeat_at=now))

    def _free_kinds(self) -> list[str]:
        """Kinds this worker may start now (within each kind's concurrency)."""
        busy: dict[str, int] = {}
        for _thread, kind in self.running.values():
            busy[kind] = busy.get(kind, 0) + 1
        return [k.name for k in job_kinds(self.app).values()
                if k.concurrency is None or busy.get(k.name, 0) < k.concurrency]

    def _start(self, ctx: _Context) -> None:
        """Run a claimed job in a thread of its own."""
        kind = _kind_of(self.app, ctx.job_id)
        thread = threading.Thread(target=execute, args=(self.app, ctx), name=f"job-{ctx.job_id}", daemon=True)
        self.running[ctx.job_id] = (thread, kind)
        thread.start()

    def run_forever(self) -> None:
        """Work until SIGTERM or SIGINT (or ``stop``), then let running jobs finish or give them back."""
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda *_: self.stop.set())
        self._register()
        log.info("worker %s started (%d threads) for: %s", self.holder, self.threads,
                 ", ".join(sorted(job_kinds(self.app))) or "nothing")
        renewed = 0.0
        try:
            while not self.stop.is_set():
                self.running = {i: entry for i, entry in self.running.items() if entry[0].is_alive()}
                if time.monotonic() - renewed >= RENEW_EVERY:
                    renew(self.app, self.holder, list(self.running))
                    reap_expired(self.app)
                    schedule_periodic(self.app)
                    renewed = time.monotonic()
                while len(self.running) < self.threads and not self.stop.is_set():
                    ctx = claim(self.app, self.holder, self._free_kinds())
                    if ctx is None:
                        break
                    self._start(ctx)
                self.stop.wait(TICK_SECONDS)
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        """Wait for running jobs up to the grace period, renewing their leases, then give back the rest."""
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        renewed = time.monotonic()
        while self.running and time.monotonic() < deadline:
            self.running = {i: entry for i, entry in self.running.items() if entry[0].is_alive()}
            if time.monotonic() - renewed >= RENEW_EVERY:
                renew(self.app, self.holder, list(self.running))
                renewed = time.monotonic()
            time.sleep(0.2)
        given_back = release(self.app, self.holder, list(self.running))
        _write(self.app, update(JobWorker).where(JobWorker.id == self.holder).values(stopped_at=utcnow()))
        log.info("worker %s stopped%s", self.holder,
                 f"; {given_back} unfinished jobs queued again" if given_back else "")
