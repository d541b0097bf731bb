"""User accounts and roles."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from flask_login import UserMixin
from sqlalchemy import Boolean, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from core.auditing import AuditSpec
from core.extensions import Model
from core.timeutil import UTCDateTime, utcnow
from core.types import EnumText


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


class AuthSource(StrEnum):
    """Who checks an account's password."""

    LOCAL = "local"
    DIRECTORY = "directory"


class User(UserMixin, Model):
    """One account per person (HIPAA unique user identification); never deleted."""

    __tablename__ = "user_account"
    __audit__ = AuditSpec("user", lambda u: u.id)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    full_name: Mapped[str] = mapped_column(String(200), default="")
    email: Mapped[str | None] = mapped_column(String(254))
    department: Mapped[str] = mapped_column(String(120), default="")
    role: Mapped[Role] = mapped_column(EnumText(Role, 20), default=Role.REQUESTER)
    password_hash: Mapped[str] = mapped_column(String(255))
    is_disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    failed_login_count: Mapped[int] = mapped_column(Integer, default=0)
    first_failed_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    session_version: Mapped[int] = mapped_column(Integer, default=1)
    auth_source: Mapped[AuthSource] = mapped_column(EnumText(AuthSource, 20), default=AuthSource.LOCAL)
    directory_dn: Mapped[str | None] = mapped_column(String(1000))
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False)
    # TOTP: the secret exists from the start of enrolment; MFA is on once mfa_enabled_at is set.
    mfa_secret: Mapped[str | None] = mapped_column(String(64))
    mfa_enabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    mfa_last_step: Mapped[int | None] = mapped_column(Integer)
    mfa_recovery_hashes: Mapped[str | None] = mapped_column(Text)  # JSON list of Argon2id hashes
    # Termination: when the change behind an ended access was first seen, and when access ended.
    directory_missing_since: Mapped[datetime | None] = mapped_column(UTCDateTime())
    access_ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    access_end_reason: Mapped[str | None] = mapped_column(String(200))

    @property
    def role_enum(self) -> Role:
        """The account's role as a Role."""
        return Role(self.role)

    @property
    def is_directory(self) -> bool:
        """Whether the hospital directory checks this account's password."""
        return self.auth_source == AuthSource.DIRECTORY

    @property
    def mfa_enabled(self) -> bool:
        """Whether logging in asks for a second factor."""
        return self.mfa_enabled_at is not None

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


class UnknownLoginName(Model):
    """Failed logins under a name no account has, counted like an account's so a lockout reveals nothing.

    The name is kept only as a keyed hash (it may be a password typed in the wrong field).
    """

    __tablename__ = "unknown_login_name"

    name_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    failed_login_count: Mapped[int] = mapped_column(Integer, default=0)
    first_failed_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime())


class DirectorySyncRun(Model):
    """One run of the directory sync: when, how it ended, how many people it saw and changed."""

    __tablename__ = "directory_sync_run"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ok: Mapped[bool] = mapped_column(Boolean, default=False)
    listed: Mapped[int] = mapped_column(Integer, default=0)
    ended: Mapped[int] = mapped_column(Integer, default=0)
    role_changes: Mapped[int] = mapped_column(Integer, default=0)
    problem: Mapped[str | None] = mapped_column(Text)
