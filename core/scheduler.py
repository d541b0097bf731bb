"""Periodic jobs: a registry that domains fill, and a runner whose database lease keeps
replicas from running the same job at once.

Each job has a row in ``job_lease``. A runner takes a job with one conditional UPDATE
(only when the job is due and nobody holds an unexpired lease), runs it in a thread of
its own, renews the lease while it runs and releases it at the end, recording the
outcome. A runner that dies leaves a lease that simply expires.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import Flask
from sqlalchemy import String, Text, or_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Mapped, mapped_column

from core.extensions import db
from core.registry import app_registry
from core.timeutil import UTCDateTime, utcnow

log = logging.getLogger("pacsdesk.scheduler")

LEASE_SECONDS = 60.0        # a lease outlives a silent runner by at most this long
RENEW_EVERY = 15.0          # a running job's lease is pushed forward this often
TICK_SECONDS = 1.0          # how often run_forever looks for due jobs
STOP_GRACE_SECONDS = 25.0   # how long a stopping runner waits for running jobs


@dataclass(frozen=True)
class Job:
    """A periodic job: ``func()`` runs in an app context and commits for itself."""

    name: str
    interval: Callable[[Flask], float]
    func: Callable[[], object]


def periodic_jobs(app: Flask) -> dict[str, Job]:
    """The app's periodic jobs by name."""
    return app_registry(app, "periodic_jobs", dict)


def register_job(app: Flask, name: str, interval: Callable[[Flask], float],
                 func: Callable[[], object]) -> None:
    """Register a periodic job; ``interval(app)`` gives its period in seconds."""
    periodic_jobs(app)[name] = Job(name, interval, func)


class JobLease(db.Model):
    """Who runs a job now (``holder`` until ``lease_until``) and how its last run ended."""

    __tablename__ = "job_lease"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(200))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_status: Mapped[str | None] = mapped_column(String(20))
    last_error: Mapped[str | None] = mapped_column(Text)


def new_holder() -> str:
    """A name for this runner that no other process or runner shares."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _ensure_row(name: str) -> None:
    """Create the job's lease row unless it exists (safe when replicas race)."""
    dialect = db.session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    db.session.execute(insert(JobLease).values(name=name).on_conflict_do_nothing())


def try_acquire(name: str, holder: str, interval: float, now: datetime | None = None) -> bool:
    """Take the job's lease if the job is due and the lease is free or expired (commits)."""
    now = now or utcnow()
    _ensure_row(name)
    taken = db.session.execute(
        update(JobLease)
        .where(JobLease.name == name,
               or_(JobLease.lease_until.is_(None), JobLease.lease_until < now),
               or_(JobLease.last_started_at.is_(None),
                   JobLease.last_started_at <= now - timedelta(seconds=interval)))
        .values(holder=holder, lease_until=now + timedelta(seconds=LEASE_SECONDS),
                last_started_at=now, last_status="running", last_error=None)
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.commit()
    return taken == 1


def renew(name: str, holder: str) -> bool:
    """Push our lease forward; False when it is no longer ours (commits)."""
    kept = db.session.execute(
        update(JobLease).where(JobLease.name == name, JobLease.holder == holder)
        .values(lease_until=utcnow() + timedelta(seconds=LEASE_SECONDS))
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.commit()
    return kept == 1


def release(name: str, holder: str, status: str, error: str | None = None) -> None:
    """Give the lease back and record how the run ended (commits)."""
    db.session.execute(
        update(JobLease).where(JobLease.name == name, JobLease.holder == holder)
        .values(lease_until=None, last_finished_at=utcnow(), last_status=status,
                last_error=error)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()


def _renew_until(app: Flask, name: str, holder: str, done: threading.Event) -> None:
    """Keep renewing the lease until ``done`` is set."""
    while not done.wait(RENEW_EVERY):
        try:
            with app.app_context():
                if not renew(name, holder):
                    log.warning("job %s: lease taken over by another runner", name)
        except Exception:
            log.exception("job %s: could not renew its lease", name)


def _run_job(app: Flask, job: Job, holder: str) -> None:
    """Run one job under its lease, survive its failure, record the outcome."""
    done = threading.Event()
    renewer = threading.Thread(target=_renew_until, args=(app, job.name, holder, done),
                               name=f"lease-{job.name}", daemon=True)
    renewer.start()
    status, error = "ok", None
    try:
        with app.app_context():
            try:
                job.func()
            except Exception as exc:
                log.exception("job %s failed", job.name)
                db.session.rollback()
                status, error = "error", f"{type(exc).__name__}: {exc}"[:4000]
    finally:
        done.set()
        renewer.join()
        try:
            with app.app_context():
                release(job.name, holder, status, error)
        except Exception:
            log.exception("job %s: could not release its lease (it will expire)", job.name)
    log.info("job %s finished: %s", job.name, status)


_RUNNING: dict[str, threading.Thread] = {}
_HOLDER = new_holder()


def run_pending(app: Flask, now: datetime | None = None,
                holder: str | None = None) -> list[threading.Thread]:
    """Start every due job whose lease this runner gets, each in its own thread."""
    holder = holder or _HOLDER
    started = []
    for job in list(periodic_jobs(app).values()):
        running = _RUNNING.get(f"{holder}/{job.name}")
        if running is not None and running.is_alive():
            continue
        with app.app_context():
            try:
                acquired = try_acquire(job.name, holder, float(job.interval(app)), now)
            except Exception:
                log.exception("job %s: could not take its lease", job.name)
                db.session.rollback()
                continue
        if not acquired:
            continue
        log.info("job %s started by %s", job.name, holder)
        thread = threading.Thread(target=_run_job, args=(app, job, holder), name=f"job-{job.name}",
                                  daemon=True)
        _RUNNING[f"{holder}/{job.name}"] = thread
        thread.start()
        started.append(thread)
    return started


def run_forever(app: Flask, stop_event: threading.Event | None = None) -> None:
    """Run due jobs until SIGTERM/SIGINT (or ``stop_event``), then let running jobs finish."""
    stop = stop_event or threading.Event()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, lambda *_: stop.set())
    holder = new_holder()
    log.info("scheduler %s started with jobs: %s", holder, ", ".join(sorted(periodic_jobs(app))) or "none")
    threads: list[threading.Thread] = []
    try:
        while not stop.is_set():
            threads = [t for t in threads if t.is_alive()]
            threads += run_pending(app, holder=holder)
            stop.wait(TICK_SECONDS)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for thread in threads:
            thread.join(max(deadline - time.monotonic(), 0))
        log.info("scheduler %s stopped", holder)
