"""Service levels: due times per priority on a 24x7 clock that pauses while the requester is awaited.

The clock runs while a ticket is new or open. It stops while the ticket waits on the
requester (and while it is resolved, in case the requester reopens it); the time stopped
is added to both due times when it runs again. ``sla_due_at`` holds the next deadline of a
running clock (first response until someone answers, then resolution), so the queue can
sort and filter on one indexed column.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select

from core.extensions import db
from helpdesk.models import Priority, SlaPolicy, Ticket, TicketStatus

# (first response, resolution) in minutes: P1 15 min / 4 h, P2 1 h / 8 h, P3 4 h / 3 days,
# P4 1 day / 10 days.
DEFAULT_SLAS: dict[str, tuple[int, int]] = {
    Priority.P1: (15, 4 * 60),
    Priority.P2: (60, 8 * 60),
    Priority.P3: (4 * 60, 3 * 24 * 60),
    Priority.P4: (24 * 60, 10 * 24 * 60),
}
RUNNING = (TicketStatus.NEW, TicketStatus.OPEN)
PAUSED = (TicketStatus.WAITING, TicketStatus.RESOLVED)
SOON = timedelta(hours=1)


_CACHE_KEY = "helpdesk_sla_minutes"


@contextmanager
def policies_read_once() -> Iterator[None]:
    """Within the block, each priority's targets are read from the policy table once (bulk changes)."""
    db.session.info[_CACHE_KEY] = {}
    try:
        yield
    finally:
        db.session.info.pop(_CACHE_KEY, None)


def sla_minutes(priority: str) -> tuple[int, int]:
    """(first response, resolution) minutes for ``priority``, from the policy table."""
    cache = db.session.info.get(_CACHE_KEY)
    if cache is not None and priority in cache:
        return cache[priority]
    policy = db.session.execute(
        select(SlaPolicy).where(SlaPolicy.priority == priority)
    ).scalar_one_or_none()
    minutes = DEFAULT_SLAS[priority] if policy is None else (policy.response_minutes,
                                                             policy.resolution_minutes)
    if cache is not None:
        cache[priority] = minutes
    return minutes


def _refresh_next_due(ticket: Ticket) -> None:
    """Set ``sla_due_at`` to the next deadline of a running clock, or None."""
    ticket.sla_due_at = None
    if ticket.status in RUNNING:
        deadlines = [ticket.resolution_due_at]
        if ticket.first_responded_at is None:
            deadlines.append(ticket.response_due_at)
        ticket.sla_due_at = min(d for d in deadlines if d is not None)
    ticket.queue_rank = 0 if ticket.sla_due_at is not None else 1


def apply_sla(ticket: Ticket) -> None:
    """Compute both due times from creation, the priority's targets and the time paused."""
    response, resolution = sla_minutes(ticket.priority)
    paused = timedelta(seconds=ticket.paused_seconds or 0)
    ticket.response_due_at = ticket.created_at + timedelta(minutes=response) + paused
    ticket.resolution_due_at = ticket.created_at + timedelta(minutes=resolution) + paused
    _refresh_next_due(ticket)


def on_status_change(ticket: Ticket, old: str, new: str, now: datetime) -> None:
    """Stop or restart the clock as the status moves between running and paused states."""
    if old in RUNNING and new in PAUSED:
        ticket.waiting_since = now
    elif old in PAUSED and new in RUNNING and ticket.waiting_since is not None:
        stopped = now - ticket.waiting_since
        ticket.paused_seconds = (ticket.paused_seconds or 0) + int(stopped.total_seconds())
        ticket.waiting_since = None
        if ticket.response_due_at is not None:
            ticket.response_due_at += stopped
        if ticket.resolution_due_at is not None:
            ticket.resolution_due_at += stopped
    _refresh_next_due(ticket)


def on_first_response(ticket: Ticket, now: datetime) -> None:
    """Record the first answer from the PACS team; the resolution target becomes next."""
    if ticket.first_responded_at is None:
        ticket.first_responded_at = now
        _refresh_next_due(ticket)


@dataclass(frozen=True)
class SlaState:
    """What the ticket page and queue show about a ticket's service level."""

    target: str            # "first response" or "resolution"
    due: datetime | None
    remaining: timedelta | None
    paused: bool
    breached: bool
    soon: bool


def sla_state(ticket: Ticket, now: datetime) -> SlaState | None:
    """The next SLA target of an unfinished ticket as of ``now``; None once resolved or closed."""
    if ticket.status not in (*RUNNING, TicketStatus.WAITING):
        return None
    responded = ticket.first_responded_at is not None
    target = "resolution" if responded else "first response"
    due = ticket.resolution_due_at if responded else ticket.response_due_at
    if due is not None and not responded and ticket.resolution_due_at is not None:
        due = min(due, ticket.resolution_due_at)
    if due is None:
        return SlaState(target, None, None, False, False, False)
    paused = ticket.status == TicketStatus.WAITING
    reference = ticket.waiting_since if paused and ticket.waiting_since else now
    remaining = due - reference
    return SlaState(target, due, remaining, paused, remaining < timedelta(0),
                    timedelta(0) <= remaining <= SOON)


def describe_remaining(remaining: timedelta) -> str:
    """Say a remaining time in words: '2 h 5 min left' or '15 min overdue'."""
    seconds = int(abs(remaining.total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    parts = [f"{days} d" if days else "", f"{hours} h" if hours else "",
             f"{minutes} min" if minutes or not (days or hours) else ""]
    text = " ".join(p for p in parts if p)
    return f"{text} overdue" if remaining.total_seconds() < 0 else f"{text} left"
