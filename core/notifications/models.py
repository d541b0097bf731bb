"""Notifications in the app, the e-mail outbox, people's choices, and the mail that came in."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, deferred, mapped_column, relationship

from core.extensions import Model
from core.timeutil import UTCDateTime, utcnow
from core.types import EnumText


class Delivery(StrEnum):
    """How a person wants one kind of notification."""

    IMMEDIATE = "immediate"
    DIGEST = "digest"
    APP_ONLY = "app_only"
    OFF = "off"

    @property
    def label(self) -> str:
        """Words shown on the settings page."""
        return {"immediate": "E-mail at once", "digest": "E-mail in a daily digest",
                "app_only": "Only in PACS Desk", "off": "Off"}[self.value]


class EmailState(StrEnum):
    """What became of a notification's e-mail."""

    NONE = "none"                # no e-mail: chosen so, e-mail off, or no address
    WAITING = "waiting"          # the next delivery puts it in the outbox
    QUEUED = "queued"            # an outbox message carries it
    DIGEST_PENDING = "digest"    # waits for the next daily digest
    DIGEST_SENT = "digest_sent"  # went out in a digest


class OutboxStatus(StrEnum):
    """Where an outgoing message is."""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    INTERRUPTED = "interrupted"

    @property
    def label(self) -> str:
        """Words shown to administrators."""
        return {"pending": "Waiting", "sending": "Being sent", "sent": "Sent",
                "failed": "Failed", "interrupted": "Interrupted: not known to be sent"}[self.value]


class InboundOutcome(StrEnum):
    """What was done with a message read from the help desk's mailbox."""

    FILED = "filed"
    REPLIED = "replied"
    AUTOMATIC = "automatic"
    REFUSED = "refused"
    HELD = "held"
    DISCARDED = "discarded"


class NotificationPreference(Model):
    """One person's choice for one kind of notification (absent: the kind's default)."""

    __tablename__ = "notification_preference"

    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(80), primary_key=True)
    delivery: Mapped[Delivery] = mapped_column(EnumText(Delivery, 12))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Notification(Model):
    """What one person is told, shown under the bell; words written by PACS Desk, never ticket text."""

    __tablename__ = "notification"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    kind: Mapped[str] = mapped_column(String(80))
    subject: Mapped[str] = mapped_column(String(300))
    paragraphs: Mapped[list[str]] = mapped_column(JSON, default=list)
    link_path: Mapped[str | None] = mapped_column(String(300))
    link_label: Mapped[str | None] = mapped_column(String(120))
    ticket: Mapped[str | None] = mapped_column(String(16))
    key: Mapped[str | None] = mapped_column(String(200))
    email: Mapped[EmailState] = mapped_column(EnumText(EmailState, 12), default=EmailState.NONE)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        Index("ix_notification_user_unread", "user_id", "read_at"),
        Index("ix_notification_user_created", "user_id", "created_at"),
        Index("ix_notification_email", "email", "user_id"),
        # "Once each": an SLA alert, a training reminder... is made once per person and key.
        Index("uq_notification_user_key", "user_id", "key", unique=True),
    )


class OutboxMessage(Model):
    """One e-mail to one recipient, kept with its Message-ID so a retry sends the same message."""

    __tablename__ = "mail_outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    notification_id: Mapped[int | None] = mapped_column(ForeignKey("notification.id"))
    kind: Mapped[str] = mapped_column(String(80))
    to_address: Mapped[str] = mapped_column(String(254))
    message_id: Mapped[str] = mapped_column(String(250), unique=True)
    ticket: Mapped[str | None] = mapped_column(String(16))
    subject: Mapped[str] = mapped_column(String(300))
    notice: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[OutboxStatus] = mapped_column(EnumText(OutboxStatus, 12), default=OutboxStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    sending_since: Mapped[datetime | None] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_result: Mapped[str | None] = mapped_column(Text)

    notification = relationship(Notification)

    __table_args__ = (
        Index("ix_mail_outbox_due", "status", "next_attempt_at"),
        Index("ix_mail_outbox_user", "user_id", "status"),
    )


class InboundMail(Model):
    """A message read from the mailbox, by key, so it is handled once even if read twice.

    A held message (unknown sender) keeps its raw bytes until an administrator assigns or
    discards it; every other row keeps only who, when and what was done.
    """

    __tablename__ = "mail_inbound"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(250), unique=True)
    message_id: Mapped[str | None] = mapped_column(String(250))
    sender: Mapped[str] = mapped_column(String(254), default="")
    subject: Mapped[str] = mapped_column(String(300), default="")
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    outcome: Mapped[InboundOutcome] = mapped_column(EnumText(InboundOutcome, 12))
    reason: Mapped[str] = mapped_column(String(300), default="")
    ticket: Mapped[str | None] = mapped_column(String(16))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    handled_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    raw: Mapped[bytes | None] = deferred(mapped_column(LargeBinary))

    __table_args__ = (Index("ix_mail_inbound_outcome", "outcome", "received_at"),)
