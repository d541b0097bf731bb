"""Reading tickets: the queue's filters, word search, sorting, and the dashboard figures."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask_sqlalchemy.pagination import Pagination
from sqlalchemy import Select, and_, case, false, func, or_, select
from sqlalchemy.orm import aliased, selectinload
from sqlalchemy.orm.attributes import set_committed_value

from core.auth.models import User
from core.extensions import db
from core.pagination import paginate
from core.timeutil import utcnow
from helpdesk.assets import asset_lookup
from helpdesk.models import ACTIVE_STATUSES, QUEUE_ORDER, Category, Priority, Ticket, TicketStatus
from helpdesk.search import search_conditions
from helpdesk.sla import RUNNING, SOON

STATUS_FILTERS = {"active": "Open work (new, open, waiting)", "all": "All statuses",
                  **{s.value: s.label for s in TicketStatus}}
SLA_FILTERS = {"breached": "Breached now", "soon": "Breached or breaching within the hour"}
COUNT_CAP = 1000
# Columns the queue can sort on (header clicks), in their natural first direction.
SORTS = {"due": "Service level", "number": "Number", "title": "Title", "priority": "Priority",
         "status": "Status", "category": "Category", "requester": "Requester",
         "assignee": "Assignee", "filed": "Filed", "updated": "Updated"}
FIRST_DIRECTION = {"filed": "desc", "updated": "desc", "number": "desc"}
# Older links keep working: ?sort=newest is "filed, newest first".
SORT_ALIASES = {"newest": ("filed", "desc"), "oldest": ("filed", "asc")}
# Columns a view may show besides number and title (the order they appear in).
COLUMNS = {"priority": "Priority", "status": "Status", "category": "Category",
           "requester": "Requester", "assignee": "Assignee", "filed": "Filed",
           "updated": "Updated", "due": "Service level"}
DEFAULT_COLUMNS = ("priority", "status", "requester", "assignee", "filed", "due")


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
    direction: str = "asc"

    def query_args(self) -> dict[str, str]:
        """The filters as request arguments (empty ones left out), for links and saved views."""
        values = {"status": self.status, "priority": self.priority,
                  "category": "" if self.category_id is None else str(self.category_id),
                  "assignee": self.assignee, "sla": self.sla, "asset": self.asset_tag, "q": self.q,
                  "sort": self.sort, "dir": self.direction}
        return {k: v for k, v in values.items() if v}

    def free_text(self) -> dict[str, str]:
        """The filters that match free text (words, asset tag), for the search's audit event."""
        return {k: v for k, v in (("q", self.q), ("asset", self.asset_tag)) if v}


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
    sort, direction = args.get("sort", "due"), args.get("dir", "")
    if sort in SORT_ALIASES:
        sort, direction = SORT_ALIASES[sort]
    if sort not in SORTS:
        sort = "due"
    if direction not in ("asc", "desc"):
        direction = FIRST_DIRECTION.get(sort, "asc")
    return TicketFilters(
        status=status if status in STATUS_FILTERS else default_status,
        priority=args.get("priority", "") if args.get("priority") in set(Priority) else "",
        category_id=_int_or_none(args.get("category")),
        assignee=assignee,
        sla=args.get("sla", "") if args.get("sla") in SLA_FILTERS else "",
        asset_tag=args.get("asset", "").strip()[:40],
        q=args.get("q", "").strip()[:200],
        sort=sort, direction=direction,
    )


def parse_columns(raw: str | None) -> tuple[str, ...]:
    """The columns asked for (``cols=priority,status``), in the table's order; the default if none."""
    wanted = {c for c in (raw or "").split(",") if c in COLUMNS}
    return tuple(c for c in COLUMNS if c in wanted) or DEFAULT_COLUMNS


def ticket_query(filters: TicketFilters, user_id: int, requester_id: int | None = None,
                 now: datetime | None = None, waiting_first: bool = False) -> Select:
    """Select tickets matching ``filters``; ``requester_id`` restricts to one requester's own.

    ``waiting_first`` puts tickets waiting on the requester first, then open ones, then done ones.
    """
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
    if waiting_first:
        query = query.order_by(case((Ticket.status == TicketStatus.WAITING, 0),
                                    (Ticket.status.in_(ACTIVE_STATUSES), 1), else_=2),
                               Ticket.created_at.desc(), Ticket.id.desc())
        return query
    return _ordered(query, filters)


def _ordered(query: Select, filters: TicketFilters) -> Select:
    """``query`` sorted on the filters' column and direction, ties broken by number."""
    if filters.sort == "due" and filters.status in RUNNING:
        keys: tuple[Any, ...] = (Ticket.sla_due_at,)  # all have a due time: use the index
    elif filters.sort in ("requester", "assignee"):
        person = aliased(User)
        column = Ticket.requester_id if filters.sort == "requester" else Ticket.assignee_id
        query = query.outerjoin(person, person.id == column)
        keys = (func.coalesce(func.nullif(person.full_name, ""), person.username, ""),)
    elif filters.sort == "category":
        # A handful of categories: rank them by label here rather than join every ticket to its category.
        labels = sorted(db.session.execute(select(Category.id, Category.label)).all(),
                        key=lambda row: (row[1].lower(), row[0]))
        ranks = {category_id: rank for rank, (category_id, _label) in enumerate(labels)}
        keys = (case(ranks, value=Ticket.category_id, else_=len(ranks)) if ranks else Ticket.category_id,)
    else:
        keys = {"due": QUEUE_ORDER, "number": (), "title": (Ticket.title,),
                "priority": (Ticket.priority, *QUEUE_ORDER), "status": (Ticket.status,),
                "filed": (Ticket.created_at,), "updated": (Ticket.updated_at,)}[filters.sort]
    keys = (*keys, Ticket.id)
    if filters.direction == "desc":
        keys = tuple(k.desc() for k in keys)
    return query.order_by(*keys)


def paginate_tickets(query: Select, searching: bool, per_page: int = 25) -> Pagination:
    """A page of tickets; a word search counts its matches only up to COUNT_CAP.

    The page's ids are found first (the database sorts narrow rows of keys and ids, not whole
    tickets with their descriptions), then those tickets are loaded.
    """
    ids = query.with_only_columns(Ticket.id)
    if not searching:
        page = paginate(ids, per_page=per_page)
    else:
        page = paginate(ids, per_page=per_page, count=False)
        capped = ids.order_by(None).limit(COUNT_CAP + 1)
        total = db.session.execute(select(func.count()).select_from(capped.subquery())).scalar_one()
        page.total = min(total, COUNT_CAP)
        page.capped = total > COUNT_CAP  # type: ignore[attr-defined]  # read by the page's count line
    wanted = list(page.items)
    loaded = {t.id: t for t in db.session.execute(select(Ticket).where(Ticket.id.in_(wanted))).scalars()}
    people = {t.requester_id for t in loaded.values()} | {t.assignee_id for t in loaded.values()}
    users: dict[int | None, User] = {
        u.id: u for u in db.session.execute(select(User).where(User.id.in_(people - {None}))).scalars()}
    for ticket in loaded.values():  # requesters and assignees in one query, not one per relationship
        set_committed_value(ticket, "requester", users.get(ticket.requester_id))
        set_committed_value(ticket, "assignee", users.get(ticket.assignee_id))
    page.items = [loaded[i] for i in wanted if i in loaded]
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
