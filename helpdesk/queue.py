"""Working the queue: bulk changes, "take", saved views, seen marks, live counts, audited searches."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, or_, select

from audit import record
from core.auth.models import User
from core.auth.permissions import Permission, has_permission
from core.extensions import db
from core.timeutil import utcnow
from helpdesk import queries, sla
from helpdesk.models import ACTIVE_STATUSES, SavedView, Ticket, TicketSeen, TicketStatus, format_number
from helpdesk.services import _UNSET, TicketError, update_ticket

# Audit actions recorded here (registered by the package's init_app).
AUDIT_ACTIONS = {
    "ticket.search": "Tickets searched by words or free text",
}

BULK_MAX = 1000
VIEW_NAME_MAX = 80


@dataclass(frozen=True)
class BulkChange:
    """What a bulk action sets on every selected ticket (None: leave as it is)."""

    status: str | None = None
    priority: str | None = None
    category_id: int | None = None
    assignee_id: Any = _UNSET      # an id, None to unassign, _UNSET to leave

    @property
    def empty(self) -> bool:
        """Whether the change would change nothing."""
        return (self.status is None and self.priority is None and self.category_id is None
                and self.assignee_id is _UNSET)


def bulk_update(ticket_ids: Sequence[int], change: BulkChange, actor: User) -> list[str]:
    """Apply ``change`` to every ticket, one ``ticket.update`` event each; all or nothing (flushes).

    A refusal names the ticket and the field; the caller rolls back so no ticket changes.
    """
    if not ticket_ids:
        raise TicketError("Select at least one ticket.", "tickets")
    if len(ticket_ids) > BULK_MAX:
        raise TicketError(f"At most {BULK_MAX} tickets at once (this selection has {len(ticket_ids)}).",
                          "tickets")
    if change.empty:
        raise TicketError("Choose what to change: assignee, status, priority or category.", "action")
    wanted = sorted(set(ticket_ids))
    tickets = list(db.session.execute(select(Ticket).where(Ticket.id.in_(wanted))
                                      .order_by(Ticket.id)).scalars())
    missing = sorted(set(wanted) - {t.id for t in tickets})
    if missing:
        raise TicketError(f"No ticket {format_number(missing[0])}: it may have been removed.", "tickets")
    changed = []
    # Each ticket's audit event flushes its change; no other query needs to flush first.
    with db.session.no_autoflush, sla.policies_read_once():
        for ticket in tickets:
            try:
                if update_ticket(ticket, actor, status=change.status, priority=change.priority,
                                 category_id=change.category_id, assignee_id=change.assignee_id):
                    changed.append(ticket.number)
            except TicketError as exc:
                raise TicketError(f"{ticket.number}: {exc} Nothing was changed.", exc.field) from None
    mark_seen(actor, [t.id for t in tickets])
    return changed


def take_ticket(ticket: Ticket, actor: User) -> dict[str, list[Any]]:
    """Assign the ticket to ``actor`` (a new one also opens); audited as ticket.update."""
    if not has_permission(actor, Permission.TICKET_WORK):
        raise TicketError("Only the PACS team takes tickets.", "assignee_id")
    status = TicketStatus.OPEN if ticket.status == TicketStatus.NEW else None
    return update_ticket(ticket, actor, assignee_id=actor.id, status=status)


def mark_seen(user: User, ticket_ids: Iterable[int], at: datetime | None = None) -> None:
    """Note that ``user`` has seen these tickets as they are now (only flushes)."""
    at = at or utcnow()
    ids = sorted(set(ticket_ids))
    if not ids:
        return
    db.session.execute(delete(TicketSeen).where(TicketSeen.user_id == user.id,
                                                TicketSeen.ticket_id.in_(ids)))
    db.session.add_all(TicketSeen(user_id=user.id, ticket_id=i, seen_at=at) for i in ids)
    db.session.flush()


def changed_since_seen(user_id: int, tickets: Sequence[Ticket]) -> dict[int, str]:
    """Tickets ``user_id`` never opened ("unread") or that changed since they last did ("changed")."""
    ids = [t.id for t in tickets]
    if not ids:
        return {}
    rows = db.session.execute(select(TicketSeen.ticket_id, TicketSeen.seen_at).where(
        TicketSeen.user_id == user_id, TicketSeen.ticket_id.in_(ids))).all()
    seen = {ticket_id: seen_at for ticket_id, seen_at in rows}
    marks = {t.id: "unread" for t in tickets if t.id not in seen}
    marks.update({t.id: "changed" for t in tickets if t.id in seen and t.updated_at > seen[t.id]})
    return marks


def record_search(filters: queries.TicketFilters, mine: bool) -> bool:
    """Audit a list search that matched free text (words, an asset tag): it may reveal patient data.

    True when an event was recorded (the caller commits it).
    """
    terms = filters.free_text()
    if terms:
        record("ticket.search", object_type="ticket",
               details={"terms": terms, "own_tickets_only": mine})
    return bool(terms)


def queue_counts(user_id: int, now: datetime | None = None) -> dict[str, int]:
    """The queue's headline counts: open work, new, unassigned, mine, breached."""
    now = now or utcnow()
    active = Ticket.status.in_(ACTIVE_STATUSES)
    row = db.session.execute(select(
        func.count().filter(active),
        func.count().filter(Ticket.status == TicketStatus.NEW),
        func.count().filter(active, Ticket.assignee_id.is_(None)),
        func.count().filter(active, Ticket.assignee_id == user_id),
        func.count().filter(Ticket.queue_rank == 0, Ticket.status.in_(sla.RUNNING), Ticket.sla_due_at < now),
    ).where(or_(active, Ticket.queue_rank == 0))).one()
    return dict(zip(("active", "new", "unassigned", "mine", "breached"), row, strict=True))


# ---------------------------------------------------------------- saved views


def visible_views(user: User) -> list[SavedView]:
    """The person's own views and the team's shared ones, by name."""
    return list(db.session.execute(
        select(SavedView).where(or_(SavedView.owner_id == user.id, SavedView.shared.is_(True)))
        .order_by(func.lower(SavedView.name), SavedView.id)).scalars())


def view_args(view: SavedView) -> dict[str, str]:
    """The queue arguments a saved view stands for."""
    return {**view.params, "view": str(view.id)}


def save_view(user: User, name: str, shared: bool, args: Mapping[str, str]) -> SavedView:
    """Save the queue's current filters, sort and columns under ``name`` (replacing the user's own)."""
    name = (name or "").replace("\x00", "").strip()
    if not name:
        raise TicketError("View name: give the view a name.", "name")
    if len(name) > VIEW_NAME_MAX:
        raise TicketError(f"View name: at most {VIEW_NAME_MAX} characters.", "name")
    if shared and not has_permission(user, Permission.TICKET_WORK):
        raise TicketError("Only the PACS team shares views.", "shared")
    params = queries.parse_filters(args).query_args()
    columns = queries.parse_columns(args.get("cols"))
    if columns != queries.DEFAULT_COLUMNS:
        params["cols"] = ",".join(columns)
    view = db.session.execute(select(SavedView).where(
        SavedView.owner_id == user.id, SavedView.name == name)).scalar_one_or_none()
    if view is None:
        view = SavedView(owner_id=user.id, name=name)
        db.session.add(view)
    view.shared = shared
    view.params = params
    db.session.flush()
    return view


def delete_view(user: User, view_id: int) -> None:
    """Delete one of the person's own views."""
    view = db.session.get(SavedView, view_id)
    if view is None or view.owner_id != user.id:
        raise TicketError("You can delete only your own views.", "view")
    db.session.delete(view)
    db.session.flush()


def get_view(user: User, view_id: int | None) -> SavedView | None:
    """A view the person may use: their own or a shared one."""
    view = db.session.get(SavedView, view_id) if view_id is not None else None
    if view is None or not (view.owner_id == user.id or view.shared):
        return None
    return view
