"""Retention policies, legal holds and the record of each retention run."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.auditing import AuditSpec
from core.auth.models import User
from core.extensions import Model
from core.timeutil import UTCDateTime, utcnow
from core.types import EnumText


class RetentionPolicy(Model):
    """How long one record class is kept, counted from which date."""

    __tablename__ = "retention_policy"
    __audit__ = AuditSpec("retention_policy", lambda p: p.record_class)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    record_class: Mapped[str] = mapped_column(String(40), unique=True)
    years: Mapped[int] = mapped_column(Integer, default=0)
    months: Mapped[int] = mapped_column(Integer, default=0)
    days: Mapped[int] = mapped_column(Integer, default=0)
    anchor: Mapped[str] = mapped_column(String(20))
    enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))

    @property
    def period_text(self) -> str:
        """The period as people say it: "6 years 3 months"."""
        parts = [f"{n} {unit}{'' if n == 1 else 's'}"
                 for n, unit in ((self.years, "year"), (self.months, "month"), (self.days, "day")) if n]
        return " ".join(parts) or "0 days"


class LegalHold(Model):
    """A hold that suspends destruction of what its scope covers until it is released."""

    __tablename__ = "legal_hold"
    __audit__ = AuditSpec("legal_hold", lambda h: h.id)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    reason: Mapped[str] = mapped_column(Text)
    placed_by_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    placed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    record_class: Mapped[str | None] = mapped_column(String(40))
    object_type: Mapped[str | None] = mapped_column(String(20))
    object_key: Mapped[str | None] = mapped_column(String(120))
    start: Mapped[datetime | None] = mapped_column(UTCDateTime())
    end: Mapped[datetime | None] = mapped_column(UTCDateTime())
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    released_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    release_reason: Mapped[str | None] = mapped_column(Text)

    placed_by: Mapped[User] = relationship(User, foreign_keys=[placed_by_id])
    released_by: Mapped[User | None] = relationship(User, foreign_keys=[released_by_id])

    __table_args__ = (Index("ix_legal_hold_released_at", "released_at"),)


class RunStatus(StrEnum):
    """Where a retention run is."""

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    ABANDONED = "abandoned"


class RetentionRun(Model):
    """One retention run: who started it, the policies in force, what went, and a digest of it."""

    __tablename__ = "retention_run"
    # A running run's heartbeat and counters move with every batch; each batch has its own event.
    __audit__ = AuditSpec("retention_run", lambda r: r.id,
                          bookkeeping=frozenset({"heartbeat_at", "counts", "total"}))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[RunStatus] = mapped_column(EnumText(RunStatus, 20), default=RunStatus.RUNNING)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    started_by: Mapped[str] = mapped_column(String(64))          # username, or "scheduler"
    started_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    policies: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)       # class -> policy in force
    counts: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)         # class -> records destroyed
    held_counts: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)    # class -> kept by holds
    class_digests: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)  # class -> SHA-256
    classes: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)  # per class count, held, dates
    digest: Mapped[str | None] = mapped_column(String(64))
    total: Mapped[int] = mapped_column(BigInteger, default=0)
    error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        # At most one running run across every replica: the database refuses a second.
        Index("uq_retention_run_one_running", "status", unique=True,
              sqlite_where=text("status = 'running'"), postgresql_where=text("status = 'running'")),
        Index("ix_retention_run_started_at", "started_at"),
    )


class RetentionRunIds(Model):
    """The ids one purge batch of a run destroyed, in the order its class digest hashed them.

    Kept so that a certificate of destruction can list what went and an auditor can recompute
    its digests; consecutive integer ids are stored as ``[first, last]`` ranges, other ids as
    text. Written in the batch's own transaction, covered by its ``retention.batch_purged`` event.
    """

    __tablename__ = "retention_run_ids"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("retention_run.id"))
    record_class: Mapped[str] = mapped_column(String(40))
    ids: Mapped[list[Any]] = mapped_column(JSON, default=list)

    __table_args__ = (Index("ix_retention_run_ids_run_class", "run_id", "record_class", "id"),)
