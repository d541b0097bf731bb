"""Tickets, their replies, attachments and history; categories and SLA policies."""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, deferred, mapped_column, relationship

from core.auditing import AuditSpec, Tracked, choice_words, user_words
from core.extensions import Model, db
from core.timeutil import UTCDateTime, utcnow
from core.types import EnumText

NUMBER_PREFIX = "PD-"
NUMBER_RE = re.compile(r"^PD-(\d{6,9})$")


class TicketStatus(StrEnum):
    """Where a ticket is in its life."""

    NEW = "new"
    OPEN = "open"
    WAITING = "waiting"
    RESOLVED = "resolved"
    CLOSED = "closed"

    @property
    def label(self) -> str:
        """Words shown to people."""
        return {"new": "New", "open": "Open", "waiting": "Waiting on requester",
                "resolved": "Resolved", "closed": "Closed"}[self.value]


STATUS_LABELS = {s: s.label for s in TicketStatus}
ACTIVE_STATUSES = (TicketStatus.NEW, TicketStatus.OPEN, TicketStatus.WAITING)
DONE_STATUSES = (TicketStatus.RESOLVED, TicketStatus.CLOSED)


class Priority(StrEnum):
    """P1 (patient care stopped) to P4 (low)."""

    P1 = "P1"
    P2 = "P2"
    P3 = "P3"
    P4 = "P4"

    @property
    def label(self) -> str:
        """Words shown to people."""
        return {"P1": "P1 · critical, patient care stopped", "P2": "P2 · high",
                "P3": "P3 · normal", "P4": "P4 · low"}[self.value]


def format_number(ticket_id: int) -> str:
    """The human ticket number for an id: 123 -> PD-000123."""
    return f"{NUMBER_PREFIX}{ticket_id:06d}"


def parse_number(number: str) -> int | None:
    """The ticket id inside a human number, or None if it is not one."""
    match = NUMBER_RE.match(number.strip().upper())
    return int(match.group(1)) if match else None


PRIORITY_LABELS = {p: p.label for p in Priority}

class Category(Model):
    """What a ticket is about; ``code`` is stable, the label is editable by admins."""

    __tablename__ = "ticket_category"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    label: Mapped[str] = mapped_column(String(120))
    description: Mapped[str] = mapped_column(String(300), default="")
    sort_order: Mapped[int] = mapped_column(Integer, default=100)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)


class SlaPolicy(Model):
    """First-response and resolution targets for one priority, in minutes on a 24x7 clock."""

    __tablename__ = "ticket_sla_policy"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    priority: Mapped[Priority] = mapped_column(EnumText(Priority, 2), unique=True)
    response_minutes: Mapped[int] = mapped_column(Integer)
    resolution_minutes: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


def _category_label(category_id: int | None) -> str | None:
    """A category's label at the time of a change."""
    category = db.session.get(Category, category_id) if category_id is not None else None
    return category.label if category is not None else None


def _username(user_id: int | None) -> str | None:
    """A user's username at the time of a change."""
    from core.auth.models import User

    user = db.session.get(User, user_id) if user_id is not None else None
    return user.username if user is not None else None


def _asset_tag(asset_id: int | None) -> str | None:
    """An asset's tag at the time of a change (through the inventory's lookup)."""
    from helpdesk.assets import asset_ref

    asset = asset_ref(asset_id)
    return asset.tag if asset is not None else None


class Ticket(Model):
    """A request for help; ``sla_due_at`` is the next SLA deadline (None while paused or done)."""

    __tablename__ = "ticket"
    __audit__ = AuditSpec(
        "ticket", lambda t: format_number(t.id), history=lambda t: ("ticket", t.id),
        tracked=(Tracked("status", label="Status", words=choice_words(lambda: STATUS_LABELS)),
                 Tracked("priority", label="Priority", words=choice_words(lambda: PRIORITY_LABELS)),
                 Tracked("category_id", "category", _category_label, "Category"),
                 Tracked("assignee_id", "assignee", _username, "Assigned to", user_words),
                 Tracked("asset_id", "asset", _asset_tag, "Asset")))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    category_id: Mapped[int] = mapped_column(ForeignKey("ticket_category.id"))
    priority: Mapped[Priority] = mapped_column(EnumText(Priority, 2), default=Priority.P3)
    status: Mapped[TicketStatus] = mapped_column(EnumText(TicketStatus, 10), default=TicketStatus.NEW)
    impact: Mapped[str] = mapped_column(String(20), default="")
    urgency: Mapped[str] = mapped_column(String(20), default="")
    requester_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    asset_id: Mapped[int | None] = mapped_column(ForeignKey("asset.id"))
    location: Mapped[str] = mapped_column(String(200), default="")
    callback_phone: Mapped[str] = mapped_column(String(40), default="")
    accession_number: Mapped[str] = mapped_column(String(64), default="")
    patient_id: Mapped[str] = mapped_column(String(64), default="")
    study_instance_uid: Mapped[str] = mapped_column(String(64), default="")
    dedup_key: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    first_responded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    response_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    resolution_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    sla_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # 0 while an SLA clock runs (sla_due_at set), else 1: the queue sorts on (queue_rank, sla_due_at).
    queue_rank: Mapped[int] = mapped_column(Integer, default=1)
    waiting_since: Mapped[datetime | None] = mapped_column(UTCDateTime())
    paused_seconds: Mapped[int] = mapped_column(Integer, default=0)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    category = relationship("Category", lazy="joined", innerjoin=True)
    requester = relationship("User", foreign_keys=[requester_id])
    assignee = relationship("User", foreign_keys=[assignee_id])

    __table_args__ = (
        Index("ix_ticket_status_sla_due", "status", "sla_due_at"),
        Index("ix_ticket_queue_order", "queue_rank", "sla_due_at"),
        Index("ix_ticket_status_created", "status", "created_at"),
        Index("ix_ticket_status_resolved", "status", "resolved_at"),
        Index("ix_ticket_created", "created_at"),
        Index("ix_ticket_requester_created", "requester_id", "created_at"),
        Index("ix_ticket_assignee_status", "assignee_id", "status"),
        Index("ix_ticket_asset", "asset_id"),
        Index("ix_ticket_category", "category_id"),
        Index("ix_ticket_dedup_key", "dedup_key"),
        Index("ix_ticket_closed", "closed_at"),
        Index("ix_ticket_updated", "updated_at"),
        Index("ix_ticket_priority_status", "priority", "status"),
    )

    @property
    def number(self) -> str:
        """Human number used in URLs and messages, e.g. PD-000123."""
        return format_number(self.id)

    @property
    def status_enum(self) -> TicketStatus:
        """The status as a TicketStatus."""
        return TicketStatus(self.status)

    @property
    def is_active(self) -> bool:
        """Whether work on the ticket is still ongoing."""
        return self.status in ACTIVE_STATUSES

    @property
    def has_phi(self) -> bool:
        """Whether the ticket carries imaging identifiers (PHI)."""
        return bool(self.accession_number or self.patient_id or self.study_instance_uid)

    def phi_identifiers(self) -> dict[str, str]:
        """The imaging identifiers present on the ticket."""
        values = {"accession_number": self.accession_number, "patient_id": self.patient_id,
                  "study_instance_uid": self.study_instance_uid}
        return {k: v for k, v in values.items() if v}


# The queue's "due first" order: running clocks by deadline, then tickets without one.
QUEUE_ORDER = (Ticket.queue_rank, Ticket.sla_due_at)


class TicketComment(Model):
    """A public reply or an internal note (never shown to requesters)."""

    __tablename__ = "ticket_comment"
    __audit__ = AuditSpec("ticket", lambda c: format_number(c.ticket_id))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("ticket.id"))
    author_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    is_internal: Mapped[bool] = mapped_column(Boolean, default=False)
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    author = relationship("User")
    attachments = relationship("TicketAttachment", back_populates="comment",
                               order_by="TicketAttachment.id")

    __table_args__ = (Index("ix_ticket_comment_ticket", "ticket_id", "created_at"),)


class TicketAttachment(Model):
    """A file kept in the database so every replica can serve it; ``data`` loads on demand."""

    __tablename__ = "ticket_attachment"
    __audit__ = AuditSpec("ticket", lambda a: format_number(a.ticket_id))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("ticket.id"))
    comment_id: Mapped[int | None] = mapped_column(ForeignKey("ticket_comment.id"))
    filename: Mapped[str] = mapped_column(String(120))
    content_type: Mapped[str] = mapped_column(String(80))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    data: Mapped[bytes] = deferred(mapped_column(LargeBinary))
    uploaded_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    comment = relationship("TicketComment", back_populates="attachments")
    uploaded_by = relationship("User")

    __table_args__ = (Index("ix_ticket_attachment_ticket", "ticket_id"),)

    @property
    def is_internal(self) -> bool:
        """Attachments of internal notes are internal too."""
        return self.comment is not None and self.comment.is_internal


class LinkKind(StrEnum):
    """How one ticket relates to another (read: ticket <kind> other)."""

    DUPLICATE = "duplicate"
    RELATED = "related"
    CHILD = "child"

    @property
    def label(self) -> str:
        """Words shown to people."""
        return {"duplicate": "Duplicate of", "related": "Related to",
                "child": "Part of incident"}[self.value]

    @property
    def inverse_label(self) -> str:
        """Words shown on the other ticket's page."""
        return {"duplicate": "Has duplicate", "related": "Related to",
                "child": "Incident of"}[self.value]


class TicketLink(Model):
    """A link from ``ticket`` to ``other``: a duplicate of it, related to it, or its child."""

    __tablename__ = "ticket_link"
    __audit__ = AuditSpec("ticket", lambda link: format_number(link.ticket_id))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("ticket.id"))
    other_id: Mapped[int] = mapped_column(ForeignKey("ticket.id"))
    kind: Mapped[LinkKind] = mapped_column(EnumText(LinkKind, 10))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (UniqueConstraint("ticket_id", "other_id", name="uq_ticket_link_pair"),
                      Index("ix_ticket_link_other", "other_id", "kind"))


class TicketFollower(Model):
    """Someone who hears about a ticket besides its requester and assignee (a merged ticket's requester)."""

    __tablename__ = "ticket_follower"
    __audit__ = AuditSpec("ticket", lambda f: format_number(f.ticket_id))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("ticket.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    user = relationship("User")

    __table_args__ = (UniqueConstraint("ticket_id", "user_id", name="uq_ticket_follower"),
                      Index("ix_ticket_follower_user", "user_id"))


class TicketSeen(Model):
    """When a person last opened a ticket's page (the queue marks tickets changed since)."""

    __tablename__ = "ticket_seen"

    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"), primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("ticket.id"), primary_key=True)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class SavedView(Model):
    """A named queue view (filters, sort and columns) of one person, or shared with the team."""

    __tablename__ = "ticket_saved_view"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    name: Mapped[str] = mapped_column(String(80))
    shared: Mapped[bool] = mapped_column(Boolean, default=False)
    params: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    owner = relationship("User")

    __table_args__ = (UniqueConstraint("owner_id", "name", name="uq_ticket_saved_view_name"),
                      Index("ix_ticket_saved_view_shared", "shared"))
