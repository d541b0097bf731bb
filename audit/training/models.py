"""Workforce training: courses, who must take them, and every completion ever recorded."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, deferred, mapped_column, relationship

from core.auditing import AuditSpec
from core.auth.models import Role, User
from core.extensions import Model
from core.timeutil import UTCDateTime, utcnow


class Course(Model):
    """A training course: who must take it, how often, and how long a new user has."""

    __tablename__ = "training_course"
    __audit__ = AuditSpec("training_course", lambda c: c.id)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    recurrence_months: Mapped[int | None] = mapped_column(Integer)  # None: one-time
    required_roles: Mapped[list[str]] = mapped_column(JSON, default=list)  # role names; empty: everyone
    days_to_complete: Mapped[int] = mapped_column(Integer, default=30)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    available_from: Mapped[datetime | None] = mapped_column(UTCDateTime())  # None: since always
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    @property
    def roles(self) -> list[str]:
        """Roles that must take the course (empty: everyone)."""
        return list(self.required_roles or [])

    @property
    def audience(self) -> str:
        """Who must take it, in words."""
        return ", ".join(Role(r).label for r in self.roles) if self.roles else "Everyone"

    @property
    def recurrence_text(self) -> str:
        """How often, in words."""
        if not self.recurrence_months:
            return "One-time"
        if self.recurrence_months == 12:
            return "Annual"
        return f"Every {self.recurrence_months} months"

    def applies_to(self, user: User) -> bool:
        """Whether ``user`` must take this course."""
        return self.is_active and (not self.roles or user.role in self.roles)


class TrainingAssignment(Model):
    """A user who must take a course, and by when the first time."""

    __tablename__ = "training_assignment"
    __audit__ = AuditSpec("training_assignment", lambda a: a.id)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    course_id: Mapped[int] = mapped_column(ForeignKey("training_course.id"))
    assigned_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    due_on: Mapped[date] = mapped_column(Date)

    user: Mapped[User] = relationship(User, foreign_keys=[user_id])
    course: Mapped[Course] = relationship(Course)

    __table_args__ = (
        UniqueConstraint("user_id", "course_id", name="uq_training_assignment_user_course"),
        Index("ix_training_assignment_course", "course_id"),
    )


class TrainingSession(Model):
    """One training session recorded for many attendees at once; each attendee gets a completion."""

    __tablename__ = "training_session"
    __audit__ = AuditSpec("training_session", lambda s: s.id)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("training_course.id"))
    completed_on: Mapped[date] = mapped_column(Date)
    trainer: Mapped[str] = mapped_column(String(200), default="")
    notes: Mapped[str] = mapped_column(Text, default="")
    # attendees given no completion, and why: [{"user_id", "username", "reason"}]
    skipped: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    recorded_by_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    course: Mapped[Course] = relationship(Course)
    recorded_by: Mapped[User] = relationship(User, foreign_keys=[recorded_by_id])


class TrainingCompletion(Model):
    """One completion of an assignment; never overwritten, so the history stays."""

    __tablename__ = "training_completion"
    __audit__ = AuditSpec("training_completion", lambda c: c.id)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    assignment_id: Mapped[int] = mapped_column(ForeignKey("training_assignment.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    course_id: Mapped[int] = mapped_column(ForeignKey("training_course.id"))
    completed_on: Mapped[date] = mapped_column(Date)
    score: Mapped[int | None] = mapped_column(Integer)
    attestation: Mapped[str] = mapped_column(Text)
    attested_at: Mapped[datetime] = mapped_column(UTCDateTime())
    certificate_name: Mapped[str | None] = mapped_column(String(200))  # name as uploaded
    certificate_type: Mapped[str | None] = mapped_column(String(40))
    certificate_size: Mapped[int | None] = mapped_column(Integer)      # set when a file is stored
    # in the database, so every replica can serve it; loaded only on download
    certificate_data: Mapped[bytes | None] = deferred(mapped_column(LargeBinary))
    recorded_by_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    session_id: Mapped[int | None] = mapped_column(ForeignKey("training_session.id"))
    notes: Mapped[str] = mapped_column(Text, default="")

    user: Mapped[User] = relationship(User, foreign_keys=[user_id])
    recorded_by: Mapped[User] = relationship(User, foreign_keys=[recorded_by_id])
    session: Mapped[TrainingSession | None] = relationship(TrainingSession)

    __table_args__ = (
        Index("ix_training_completion_session", "session_id"),
        Index("ix_training_completion_assignment", "assignment_id", "completed_on"),
        Index("ix_training_completion_user", "user_id"),
        Index("ix_training_completion_completed_on", "completed_on"),
    )
