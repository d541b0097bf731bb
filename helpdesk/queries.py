"""Reading tickets: the queue's filters, word search, sorting, and the dashboard figures."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask_sqlalchemy.pagination import Pagination
from sqlalchemy import Select, and_, false, func, or_, select
from sqlalchemy.orm import selectinload

from core.extensions import db
from core.pagination import paginate
from core.timeutil import utcnow
from helpdesk.assets import asset_lookup
from helpdesk.models import ACTIVE_STATUSES, QUEUE_ORDER, Priority, Ticket, TicketStatus
from helpdesk.search import search_conditions
from helpdesk.sla import RUNNING, SOON

STATUS_FILTERS = {"active": "Open work (new, open, waiting)", "all": "All statuses",
                  **{s.value: s.label for s in TicketStatus}}
SLA_FILTERS = {"breached": "Breached now", "soon": "Breached or breaching within the hour"}
COUNT_CAP = 1000
SORTS = {"due": "Due first", "newest": "Newest first", "oldest": "Oldest first",
         "priority": "Priority", "updated": "Recently updated"}


@dataclass(frozen=True)
class TicketFilters:
    """What the queue (or a requester's list) is narrowed to; bad values are ignored."""

    status: str = "active"
    priority: str = ""
    category_id: int | None = None
    assignee: str = ""            # "", "me", "none" or a user id
    sla: str = ""
    asset_tag: str = ""
    q: str = ""
    sort: str = "due"


def _int_or_none(value: str | None) -> int | None:
    """An integer from a query string, or None."""
    try:
        return int(value) if value else None
    except ValueError:
        return None


def parse_filters(args: Mapping[str, str], default_status: str = "active") -> TicketFilters:
    """Read filters from request arguments, dropping anything not on the lists."""
    status = args.get("status", default_status)
    assignee = args.get("assignee", "")
    if assignee not in ("", "me", "none") and _int_or_none(assignee) is None:
        assignee = ""
    return TicketFilters(
        status=status if status in STATUS_FILTERS else default_status,
        priority=args.get("priority", "") if args.get("priority") in set(Priority) else "",
        category_id=_int_or_none(args.get("category")),
        assignee=assignee,
        sla=args.get("sla", "") if args.get("sla") in SLA_FILTERS else "",
        asset_tag=args.get("asset", "").strip()[:40],
        q=args.get("q", "").strip()[:200],
        sort=args.get("sort", "due") if args.get("sort") in SORTS else "due",
    )


def ticket_query(filters: TicketFilters, user_id: int, requester_id: int | None = None,
                 now: datetime | None = None) -> Select:
    """Select tickets matching ``filters``; ``requester_id`` restricts to one requester's own."""
    now = now or utcnow()
    query = select(Ticket).options(selectinload(Ticket.requester), selectinload(Ticket.assignee))
    if requester_id is not None:
        query = query.where(Ticket.requester_id == requester_id)
    if filters.status == "active":
        query = query.where(Ticket.status.in_(ACTIVE_STATUSES))
    elif filters.status != "all":
        query = query.where(Ticket.status == filters.status)
    if filters.priority:
        query = query.where(Ticket.priority == filters.priority)
    if filters.category_id is not None:
        query = query.where(Ticket.category_id == filters.category_id)
    if filters.assignee == "me":
        query = query.where(Ticket.assignee_id == user_id)
    elif filters.assignee == "none":
        query = query.where(Ticket.assignee_id.is_(None))
    elif filters.assignee:
        query = query.where(Ticket.assignee_id == int(filters.assignee))
    if filters.sla:
        limit = now if filters.sla == "breached" else now + SOON
        query = query.where(Ticket.queue_rank == 0, Ticket.status.in_(RUNNING), Ticket.sla_due_at < limit)
    if filters.asset_tag:
        lookup = asset_lookup()
        if lookup is None:
            query = query.where(false())
        else:
            query = query.where(Ticket.asset_id.in_(lookup.ids_with_tag(filters.asset_tag)))
    if filters.q:
        query = query.where(*search_conditions(filters.q))
    order: dict[str, tuple[Any, ...]] = {
        "due": (*QUEUE_ORDER, Ticket.id),
        "newest": (Ticket.created_at.desc(), Ticket.id.desc()),
        "oldest": (Ticket.created_at, Ticket.id),
        "priority": (Ticket.priority, *QUEUE_ORDER, Ticket.id),
        "updated": (Ticket.updated_at.desc(), Ticket.id.desc()),
    }
    if filters.sort == "due" and filters.status in RUNNING:
        return query.order_by(Ticket.sla_due_at, Ticket.id)  # all have a due time: use the index
    return query.order_by(*order[filters.sort])


def paginate_tickets(query: Select, searching: bool, per_page: int = 25) -> Pagination:
    """A page of tickets; a word search counts its matches only up to COUNT_CAP."""
    if not searching:
        return paginate(query, per_page=per_page)
    page = paginate(query, per_page=per_page, count=False)
    capped = query.with_only_columns(Ticket.id).order_by(None).limit(COUNT_CAP + 1)
    total = db.session.execute(select(func.count()).select_from(capped.subquery())).scalar_one()
    page.total = min(total, COUNT_CAP)
    page.capped = total > COUNT_CAP  # type: ignore[attr-defined]
    return page


def dashboard_figures(now: datetime | None = None) -> dict[str, Any]:
    """Open tickets by priority, breached now, opened and resolved in the last 7 days."""
    now = now or utcnow()
    week_ago = now - timedelta(days=7)
    by_priority = dict.fromkeys([p.value for p in Priority], 0)
    rows = db.session.execute(
        select(Ticket.priority, func.count()).where(Ticket.status.in_(ACTIVE_STATUSES))
        .group_by(Ticket.priority)
    )
    for priority, count in rows:
        by_priority[priority] = count
    breached = db.session.execute(
        select(func.count()).select_from(Ticket)
        .where(Ticket.queue_rank == 0, Ticket.status.in_(RUNNING), Ticket.sla_due_at < now)
    ).scalar_one()
    opened = db.session.execute(
        select(func.count()).select_from(Ticket).where(Ticket.created_at >= week_ago)
    ).scalar_one()
    resolved = db.session.execute(
        select(func.count()).select_from(Ticket).where(or_(
            Ticket.resolved_at >= week_ago,
            and_(Ticket.resolved_at.is_(None), Ticket.closed_at >= week_ago)))
    ).scalar_one()
    return {"by_priority": by_priority, "open_total": sum(by_priority.values()),
            "breached": breached, "opened_7d": opened, "resolved_7d": resolved}


def asset_tickets(asset_id: int, recent: int = 10) -> tuple[list[Ticket], list[Ticket]]:
    """An asset's open tickets (most urgent first) and its most recently finished ones."""
    base = select(Ticket).options(selectinload(Ticket.assignee)).where(Ticket.asset_id == asset_id)
    open_tickets = list(db.session.execute(
        base.where(Ticket.status.in_(ACTIVE_STATUSES)).order_by(*QUEUE_ORDER)).scalars())
    done = list(db.session.execute(
        base.where(Ticket.status.not_in(ACTIVE_STATUSES)).order_by(Ticket.updated_at.desc(), Ticket.id.desc())
        .limit(recent)).scalars())
    return open_tickets, done
