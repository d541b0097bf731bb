"""Report jobs: what was asked, how far the background generation got, and the PDF."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, deferred, mapped_column, relationship

from core.auditing import AuditSpec
from core.extensions import Model
from core.timeutil import UTCDateTime, utcnow
from core.types import EnumText

# A job neither done nor failed this long after it was asked for died with its process.
ABANDONED_AFTER = timedelta(hours=2)


class ReportStatus(StrEnum):
    """Where a report job is."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


def new_report_id() -> str:
    """A random, unguessable report id used in URLs and printed on the PDF."""
    return secrets.token_urlsafe(12)


class ReportJob(Model):
    """One requested report; the PDF is kept in the database so every replica can serve it."""

    __tablename__ = "report_job"
    # Building a report (status, progress, the PDF) is the job's bookkeeping; asking for it and
    # destroying it are audited.
    __audit__ = AuditSpec("report", lambda j: j.id, bookkeeping=frozenset({
        "status", "progress", "stage", "started_at", "finished_at", "pdf", "pdf_size", "error"}))

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_report_id)
    kind: Mapped[str] = mapped_column(String(40))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[ReportStatus] = mapped_column(EnumText(ReportStatus, 10), default=ReportStatus.QUEUED)
    progress: Mapped[int] = mapped_column(Integer, default=0)
    stage: Mapped[str] = mapped_column(String(200), default="")
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    pdf: Mapped[bytes | None] = deferred(mapped_column(LargeBinary))
    pdf_size: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)

    requested_by = relationship("User")

    __table_args__ = (
        Index("ix_report_job_requester_created", "requested_by_id", "created_at"),
        Index("ix_report_job_created", "created_at"),
    )

    @property
    def parameters(self) -> dict[str, Any]:
        """The stored parameters (from, to, user, object, run)."""
        return dict(self.params or {})

    @property
    def is_finished(self) -> bool:
        """Whether the job ended (done or failed)."""
        return self.status in (ReportStatus.DONE, ReportStatus.FAILED)

    @property
    def is_abandoned(self) -> bool:
        """Whether an unfinished job is too old to be still running (its server restarted)."""
        return not self.is_finished and utcnow() - self.created_at > ABANDONED_AFTER
