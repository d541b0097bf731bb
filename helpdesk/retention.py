"""Closed tickets as a retention record class: find expired ones, respect holds, purge."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Select, delete, or_, select

from audit.retention.registry import HoldScope, RecordClass
from audit.trail.history import forget_history
from core.auth.models import User
from core.database import rowcount
from core.extensions import db
from helpdesk.assets import asset_lookup
from helpdesk.models import Ticket, TicketAttachment, TicketComment, TicketStatus, parse_number
from helpdesk.search import TicketWord

RECORD_CLASS = "closed_tickets"
BATCH = 500


def candidates(cutoff: datetime, anchor: str) -> Select:
    """(id, anchor time) of closed tickets whose anchor (closed or created) is before ``cutoff``."""
    column = Ticket.closed_at if anchor == "closed" else Ticket.created_at
    return (select(Ticket.id, column.label("anchor"))
            .where(Ticket.status == TicketStatus.CLOSED, column.is_not(None), column < cutoff))


def _scope_condition(hold: HoldScope):
    """A SQL condition for the tickets ``hold`` covers, or None when it covers none of them."""
    if hold.object_type == "ticket" and hold.object_key:
        ticket_id = parse_number(hold.object_key)
        return Ticket.id == ticket_id if ticket_id is not None else None
    if hold.object_type == "user" and hold.object_key:
        return Ticket.requester_id.in_(select(User.id).where(User.username == hold.object_key.lower()))
    if hold.object_type == "asset" and hold.object_key:
        lookup = asset_lookup()
        return Ticket.asset_id.in_(lookup.ids_with_tag(hold.object_key)) if lookup else None
    if hold.object_type is None and hold.record_class in (None, RECORD_CLASS):
        conditions = []
        if hold.start is not None:  # the ticket's life overlaps the held period
            conditions.append(or_(Ticket.closed_at.is_(None), Ticket.closed_at >= hold.start))
        if hold.end is not None:
            conditions.append(Ticket.created_at <= hold.end)
        return conditions or [Ticket.id.is_not(None)]
    return None


def held(ids: Sequence[int], holds: Sequence[HoldScope]) -> set[int]:
    """The ids among ``ids`` that a legal hold covers."""
    found: set[int] = set()
    id_list = list(ids)
    for hold in holds:
        condition = _scope_condition(hold)
        if condition is None:
            continue
        conditions = condition if isinstance(condition, list) else [condition]
        for start in range(0, len(id_list), BATCH):
            chunk = id_list[start:start + BATCH]
            found.update(db.session.execute(
                select(Ticket.id).where(Ticket.id.in_(chunk), *conditions)).scalars())
    return found


def purge(ids: Sequence[int]) -> int:
    """Delete closed tickets with their replies, attachments and history; returns how many."""
    removed = 0
    id_list = list(ids)
    for start in range(0, len(id_list), BATCH):
        chunk = id_list[start:start + BATCH]
        closed = select(Ticket.id).where(Ticket.id.in_(chunk),
                                         Ticket.status == TicketStatus.CLOSED)
        chunk = list(db.session.execute(closed).scalars())
        if not chunk:
            continue
        db.session.execute(delete(TicketAttachment).where(TicketAttachment.ticket_id.in_(chunk)))
        db.session.execute(delete(TicketComment).where(TicketComment.ticket_id.in_(chunk)))
        forget_history("ticket", chunk)
        db.session.execute(delete(TicketWord).where(TicketWord.ticket_id.in_(chunk)))
        removed += rowcount(db.session.execute(delete(Ticket).where(Ticket.id.in_(chunk))))
    db.session.flush()
    return removed


RETENTION_CLASS = RecordClass(
    key=RECORD_CLASS,
    object_type="ticket",
    label="Closed tickets with their replies and attachments",
    anchors=("closed", "created"),
    default_years=7,
    floor_years=0,
    floor_rule="",
    candidates=candidates,
    held=held,
    purge=purge,
)
