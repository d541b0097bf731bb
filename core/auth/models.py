"""User accounts and roles."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from flask_login import UserMixin
from sqlalchemy import Boolean, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from core.auditing import AuditSpec
from core.extensions import db
from core.timeutil import UTCDateTime, utcnow


class Role(StrEnum):
    """What a person does in PACS Desk; the permissions follow from it."""

    REQUESTER = "requester"
    TECHNICIAN = "technician"
    COMPLIANCE = "compliance"
    ADMIN = "admin"

    @property
    def label(self) -> str:
        """Human-readable name of the role."""
        return {
            "requester": "Requester",
            "technician": "Technician",
            "compliance": "Compliance officer",
            "admin": "Administrator",
        }[self.value]


class User(UserMixin, db.Model):
    """One account per person (HIPAA unique user identification); never deleted."""

    __tablename__ = "user_account"
    __audit__ = AuditSpec("user", lambda u: u.id)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    full_name: Mapped[str] = mapped_column(String(200), default="")
    email: Mapped[str | None] = mapped_column(String(254))
    department: Mapped[str] = mapped_column(String(120), default="")
    role: Mapped[str] = mapped_column(String(20), default=Role.REQUESTER.value)
    password_hash: Mapped[str] = mapped_column(String(255))
    is_disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    failed_login_count: Mapped[int] = mapped_column(Integer, default=0)
    first_failed_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    session_version: Mapped[int] = mapped_column(Integer, default=1)

    @property
    def role_enum(self) -> Role:
        """The account's role as a Role."""
        return Role(self.role)

    @property
    def display_name(self) -> str:
        """Full name when known, else the username."""
        return self.full_name or self.username

    @property
    def is_active(self) -> bool:
        """Disabled accounts cannot log in (Flask-Login)."""
        return not self.is_disabled

    def get_id(self) -> str:
        """Session id that changes when the account is disabled or its role changes."""
        return f"{self.id}.{self.session_version}"

    def is_locked(self, now: datetime | None = None) -> bool:
        """Whether repeated failed logins have locked the account right now."""
        return self.locked_until is not None and self.locked_until > (now or utcnow())

    def __repr__(self) -> str:
        return f"<User {self.username} ({self.role})>"
