"""Jobs, the schedule of periodic jobs, and the workers that run them."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from core.extensions import Model
from core.timeutil import UTCDateTime, utcnow
from core.types import EnumText


class JobStatus(StrEnum):
    """Where a job is in its life."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def label(self) -> str:
        """Words shown to people."""
        return {"queued": "Queued", "running": "Running", "done": "Finished", "failed": "Failed",
                "cancelled": "Cancelled"}[self.value]


ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING)


class Job(Model):
    """One piece of work: what to run (``kind`` and ``params``), its state, attempts and lease."""

    __tablename__ = "job"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(80))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[JobStatus] = mapped_column(EnumText(JobStatus, 12), default=JobStatus.QUEUED)
    priority: Mapped[int] = mapped_column(Integer, default=100)
    dedup_key: Mapped[str | None] = mapped_column(String(200))
    title: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    run_after: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    lease_holder: Mapped[str | None] = mapped_column(String(200))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    progress: Mapped[int] = mapped_column(Integer, default=0)
    stage: Mapped[str] = mapped_column(String(200), default="")
    error: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    __table_args__ = (
        Index("ix_job_claim", "status", "priority", "run_after"),
        Index("ix_job_kind_status", "kind", "status"),
        Index("ix_job_created_by_status", "created_by_id", "status"),
        Index("ix_job_finished_at", "finished_at"),
        # A job with a dedup key is queued or running at most once (a sweep, a node's check).
        Index("uq_job_dedup_active", "dedup_key", unique=True,
              sqlite_where=text("status IN ('queued', 'running')"),
              postgresql_where=text("status IN ('queued', 'running')")),
    )



class JobSchedule(Model):
    """When each periodic job was last queued; one conditional update decides which replica queues it."""

    __tablename__ = "job_schedule"

    name: Mapped[str] = mapped_column(String(80), primary_key=True)
    last_queued_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class JobWorker(Model):
    """A running worker process and its heartbeat (the Jobs page lists them)."""

    __tablename__ = "job_worker"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
