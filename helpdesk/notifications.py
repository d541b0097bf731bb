"""Who hears about tickets, and the signals sent once a change is committed.

Services call ``queue_signal`` at the moment of a change. Two things follow:

1. in the same transaction, the people concerned are notified (``core.notifications.notify``:
   the bell, and the outbox when they want e-mail), so a rolled-back change tells nobody;
2. after the commit, the blinker signal is sent with plain values (ticket id and number, and
   what changed) for other listeners, which load what they need in their own session.

Who hears what: the requester gets a confirmation when a ticket is filed, each public reply
of the PACS team, and the move to "waiting on requester" or "resolved" (with how to reopen);
so do the ticket's followers (the requesters of tickets merged into it), whose replies count
as the requester's;
the technicians get new tickets; the assignee (the technicians while nobody is assigned)
gets the requester's replies and SLA warnings; admins also get SLA breaches. Messages name
the ticket by number and its title only after ``phi.safe_title``: never its description,
replies or imaging identifiers.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from blinker import NamedSignal, Namespace
from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.auth.models import Role, User
from core.extensions import db
from core.jobs.registry import JobContext
from core.mail.compose import Notice, ticket_notice
from core.notifications import NotificationKind, notify, users_with_roles
from core.timeutil import format_local, utcnow
from helpdesk.models import Ticket, TicketComment, TicketFollower, TicketStatus

helpdesk_signals = Namespace()

ticket_created = helpdesk_signals.signal("ticket-created")
ticket_replied = helpdesk_signals.signal("ticket-replied")
status_changed = helpdesk_signals.signal("ticket-status-changed")

_KEY = "helpdesk_pending_signals"

STAFF = frozenset({Role.TECHNICIAN, Role.ADMIN})
SLA_WARNING = timedelta(minutes=30)
# A breach older than this when first seen (the worker was down, or the feature is new) is not announced.
SLA_LOOKBACK = timedelta(hours=2)

FILED = "helpdesk.ticket_filed"
NEW_TICKET = "helpdesk.ticket_new"
TEAM_REPLIED = "helpdesk.team_replied"
REQUESTER_REPLIED = "helpdesk.requester_replied"
WAITING = "helpdesk.waiting_on_you"
RESOLVED = "helpdesk.resolved"
SLA_SOON = "helpdesk.sla_soon"
SLA_BREACHED = "helpdesk.sla_breached"
MAIL_REFUSED = "helpdesk.mail_refused"

NOTIFICATION_KINDS = (
    NotificationKind(FILED, "Confirmation when a ticket is filed for you"),
    NotificationKind(TEAM_REPLIED, "A reply from the PACS team on your ticket"),
    NotificationKind(WAITING, "Your ticket waits for your answer"),
    NotificationKind(RESOLVED, "Your ticket was resolved"),
    NotificationKind(MAIL_REFUSED, "Your e-mail to the help desk could not be filed"),
    NotificationKind(NEW_TICKET, "A new ticket in the queue", roles=STAFF),
    NotificationKind(REQUESTER_REPLIED, "The requester answered a ticket you work on", roles=STAFF),
    NotificationKind(SLA_SOON, "A ticket you work on is due within 30 minutes", roles=STAFF),
    NotificationKind(SLA_BREACHED, "A ticket missed its service level", roles=STAFF),
)


def queue_signal(session: Session, signal: NamedSignal, **values: Any) -> None:
    """Notify the people concerned now (same transaction); send ``signal`` after ``session`` commits."""
    _notify_people(session, signal, values)
    session.info.setdefault(_KEY, []).append((signal, values))


def send_after_commit(session: Session) -> None:
    """Deliver the signals of the transaction that just committed."""
    pending = session.info.pop(_KEY, [])
    for signal, values in pending:
        signal.send("helpdesk", **values)


def drop_after_rollback(session: Session) -> None:
    """Forget the signals of a transaction that rolled back."""
    session.info.pop(_KEY, None)


# ---------------------------------------------------------------- who hears what


def _notice(ticket: Ticket, event: str, *details: str) -> Notice:
    """A notice about ``ticket``: its number, its safe title, ``details`` written here."""
    return ticket_notice(ticket.number, ticket.title, event, identifiers=ticket.phi_identifiers().values(),
                         details=details)


def _workers(ticket: Ticket) -> list[User]:
    """Who works the ticket: its assignee, or every technician while nobody is assigned."""
    return [ticket.assignee] if ticket.assignee is not None else users_with_roles(Role.TECHNICIAN)


def _requesters(ticket: Ticket) -> list[User]:
    """Who the ticket is for: its requester, then its followers (requesters of tickets merged into it)."""
    followers = db.session.execute(select(User).join(TicketFollower, TicketFollower.user_id == User.id)
                                   .where(TicketFollower.ticket_id == ticket.id)
                                   .order_by(User.id)).scalars().all()
    people = [ticket.requester] if ticket.requester is not None else []
    return people + [u for u in followers if u.id != ticket.requester_id]


def _answer_hint() -> str:
    """How the requester can answer."""
    mail = current_app.config["PACSDESK_MAIL"]
    return ("Answer in PACS Desk, or reply to this e-mail." if mail.imap is not None
            else "Answer in PACS Desk.")


def _on_created(ticket: Ticket, system: bool) -> None:
    """Confirm to the requester; tell the technicians (an outage ticket has its own node-down notice)."""
    status = TicketStatus(ticket.status).label
    if ticket.requester is not None:
        notify(FILED, [ticket.requester], _notice(
            ticket, "Ticket filed", f"Status: {status}, priority {ticket.priority}.",
            "The PACS team will answer in PACS Desk; you will hear from us when they do."))
    if not system:
        filer = ticket.requester_id
        notify(NEW_TICKET, [u for u in users_with_roles(Role.TECHNICIAN) if u.id != filer], _notice(
            ticket, "New ticket", f"Priority {ticket.priority}, category {ticket.category.label}."))


def _on_replied(ticket: Ticket, comment_id: int, internal: bool) -> None:
    """A team reply goes to the requester and followers; theirs to whoever works the ticket."""
    comment = db.session.get(TicketComment, comment_id)
    if internal or comment is None:
        return
    requesters = _requesters(ticket)
    if any(u.id == comment.author_id for u in requesters):
        notify(REQUESTER_REPLIED, [u for u in _workers(ticket) if u.id != comment.author_id],
               _notice(ticket, "The requester answered"))
    elif requesters:
        notify(TEAM_REPLIED, requesters,
               _notice(ticket, "New reply from the PACS team", _answer_hint()))


def _on_status(ticket: Ticket, new: str) -> None:
    """Waiting on the requester, or resolved (with until when it can be reopened): requester and followers."""
    requesters = _requesters(ticket)
    if not requesters:
        return
    if new == TicketStatus.WAITING:
        notify(WAITING, requesters, _notice(
            ticket, "Waiting for your answer",
            "The PACS team needs an answer from you before they can go on; the ticket's clock is "
            "paused until you answer.", _answer_hint()))
    elif new == TicketStatus.RESOLVED:
        days = current_app.config["PACSDESK_AUTOCLOSE_DAYS"]
        until = format_local((ticket.resolved_at or utcnow()) + timedelta(days=days), "%Y-%m-%d %H:%M %Z")
        notify(RESOLVED, requesters, _notice(
            ticket, "Your ticket was resolved",
            f"If the problem is not solved, open the ticket and choose Reopen before {until}; "
            "after that it closes and a new ticket is needed."))


def _notify_people(session: Session, signal: NamedSignal, values: dict[str, Any]) -> None:
    """Write the notifications a change calls for, in the change's transaction."""
    ticket = session.get(Ticket, values["ticket_id"])
    if ticket is None:
        return
    if signal is ticket_created:
        _on_created(ticket, bool(values.get("system")))
    elif signal is ticket_replied:
        _on_replied(ticket, values["comment_id"], bool(values.get("internal")))
    elif signal is status_changed:
        _on_status(ticket, values["new"])


# ---------------------------------------------------------------- SLA warnings and breaches


def _sla_target(ticket: Ticket) -> str:
    """Which target ``sla_due_at`` is: the first response or the resolution."""
    first = ticket.first_responded_at is None and ticket.sla_due_at == ticket.response_due_at
    return "first response" if first else "resolution"


def _alert(ticket: Ticket, due: datetime, breached: bool) -> None:
    """Warn (due soon) or announce (breached) once per ticket and deadline."""
    when = format_local(due, "%Y-%m-%d %H:%M %Z")
    target = _sla_target(ticket)
    people: Iterable[User] = _workers(ticket)
    if breached:
        people = [*people, *users_with_roles(Role.ADMIN)]
        notice = _notice(ticket, "Service level missed",
                         f"The {target} was due at {when}. Priority {ticket.priority}.")
    else:
        notice = _notice(ticket, "Due within 30 minutes",
                         f"The {target} is due at {when}. Priority {ticket.priority}.")
    kind, tag = (SLA_BREACHED, "breached") if breached else (SLA_SOON, "soon")
    notify(kind, people, notice, key=f"sla-{tag}:{ticket.number}:{due.isoformat()}")


def sla_alerts(now: datetime | None = None) -> dict[str, int]:
    """Warn about tickets due within 30 minutes and announce fresh breaches, each once; commits."""
    now = now or utcnow()
    tickets = db.session.execute(select(Ticket).where(
        Ticket.status.in_([TicketStatus.NEW, TicketStatus.OPEN]),
        Ticket.sla_due_at.is_not(None), Ticket.sla_due_at <= now + SLA_WARNING,
        Ticket.sla_due_at > now - SLA_LOOKBACK).order_by(Ticket.sla_due_at)).scalars().all()
    counts = {"soon": 0, "breached": 0}
    for ticket in tickets:
        assert ticket.sla_due_at is not None
        breached = ticket.sla_due_at <= now
        _alert(ticket, ticket.sla_due_at, breached)
        counts["breached" if breached else "soon"] += 1
    db.session.commit()
    return counts


def sla_alerts_job(ctx: JobContext) -> dict[str, int]:
    """The ``helpdesk.sla_alerts`` job, every minute (commits)."""
    return sla_alerts()
