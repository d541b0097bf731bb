"""Closed tickets as a retention record class, described for the retention engine."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, or_, select

from audit.retention.described import Condition, Described
from audit.trail.history import forget_history
from core.auth.models import User
from core.extensions import db
from helpdesk.assets import asset_lookup
from helpdesk.models import Ticket, TicketAttachment, TicketComment, TicketStatus, parse_number
from helpdesk.search import TicketWord

RECORD_CLASS = "closed_tickets"


def _closed() -> list[Condition]:
    """Only closed tickets can go."""
    return [Ticket.status == TicketStatus.CLOSED]


def _ticket(number: str) -> Condition | None:
    """The ticket with this number."""
    ticket_id = parse_number(number)
    return Ticket.id == ticket_id if ticket_id is not None else None


def _requested_by(username: str) -> Condition:
    """The tickets this user filed."""
    return Ticket.requester_id.in_(select(User.id).where(User.username == username.lower()))


def _about_asset(tag: str) -> Condition | None:
    """The tickets about the asset with this tag (any case)."""
    lookup = asset_lookup()
    return Ticket.asset_id.in_(lookup.ids_with_tag(tag)) if lookup else None


def _lived_during(start: datetime | None, end: datetime | None) -> list[Condition]:
    """Tickets whose life (created to closed) overlaps the held period."""
    conditions: list[Condition] = []
    if start is not None:
        conditions.append(or_(Ticket.closed_at.is_(None), Ticket.closed_at >= start))
    if end is not None:
        conditions.append(Ticket.created_at <= end)
    return conditions


def _replies_attachments_history_words(ids: list[int]) -> None:
    """Delete what belongs to these tickets (flushes nothing)."""
    db.session.execute(delete(TicketAttachment).where(TicketAttachment.ticket_id.in_(ids)))
    db.session.execute(delete(TicketComment).where(TicketComment.ticket_id.in_(ids)))
    forget_history("ticket", ids)
    db.session.execute(delete(TicketWord).where(TicketWord.ticket_id.in_(ids)))


RETENTION_CLASS = Described(
    key=RECORD_CLASS, object_type="ticket", label="Closed tickets with their replies and attachments",
    model=Ticket, anchors={"closed": Ticket.closed_at, "created": Ticket.created_at}, default_years=7,
    belongs=_closed, held_by={"ticket": _ticket, "user": _requested_by, "asset": _about_asset},
    period=_lived_during, purge_with=(_replies_attachments_history_words,))
