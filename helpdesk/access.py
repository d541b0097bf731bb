"""Who may see and answer a ticket, and the audit events of reading tickets."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from audit import record
from core.auth.permissions import Permission, has_permission
from core.extensions import db
from helpdesk.models import Ticket, TicketAttachment, TicketFollower

# Audit actions recorded here (registered by the package's init_app).
AUDIT_ACTIONS = {
    "ticket.view": "Ticket viewed",
    "ticket.export": "Ticket list exported",
    "attachment.download": "Attachment downloaded",
}


def _own(user: Any, ticket: Ticket) -> bool:
    """Whether ``user`` filed the ticket or follows it (their own ticket was merged into it)."""
    user_id = getattr(user, "id", None)
    if user_id is None:
        return False
    return ticket.requester_id == user_id or db.session.execute(select(TicketFollower.id).where(
        TicketFollower.ticket_id == ticket.id, TicketFollower.user_id == user_id)).first() is not None


def can_see(user: Any, ticket: Ticket) -> bool:
    """Staff who read all tickets see every ticket; others only those they filed or follow."""
    return has_permission(user, Permission.TICKET_READ_ALL) or _own(user, ticket)


def can_reply(user: Any, ticket: Ticket) -> bool:
    """Technicians reply to any ticket; anyone else only to tickets they filed or follow."""
    return has_permission(user, Permission.TICKET_WORK) or _own(user, ticket)


def record_ticket_view(ticket: Ticket) -> None:
    """Audit that the current user opened the ticket page (a PHI read when identifiers exist)."""
    record("ticket.view", object_type="ticket", object_id=ticket.number,
           details=ticket.phi_identifiers())


def record_download(ticket: Ticket, attachment: TicketAttachment) -> None:
    """Audit an attachment download."""
    record("attachment.download", object_type="ticket", object_id=ticket.number,
           details={"attachment_id": attachment.id, "filename": attachment.filename,
                    **ticket.phi_identifiers()})


def record_export(count: int, filters: dict[str, Any], mine: bool) -> None:
    """Audit a CSV export of a ticket list."""
    record("ticket.export", object_type="ticket", details={"count": count, "filters": filters,
                                                           "own_tickets_only": mine})
