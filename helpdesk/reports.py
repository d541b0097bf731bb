"""The help desk's part of the reports: its PDF report and which audit events read PHI."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import SQLColumnExpression, and_, case, func, literal, or_, select
from sqlalchemy.sql.elements import ColumnElement

from audit.reports.charts import bar_chart
from audit.reports.localtime import LocalClock
from audit.reports.registry import (
    PhiRule,
    Progress,
    ReportContent,
    ReportKind,
    ReportRequest,
)
from audit.reports.services import period_bounds, period_text
from audit.reports.sqlstats import dialect, human_duration, percentiles, seconds_between
from audit.trail.models import AuditEvent
from core.auth.models import User
from core.auth.permissions import Permission
from core.extensions import db
from core.mail.phi import GENERIC_TITLE, safe_title
from core.timeutil import UTCDateTime, format_local, utcnow
from helpdesk.assets import asset_lookup
from helpdesk.models import ACTIVE_STATUSES, Category, Priority, Ticket, format_number

IDENTIFIER_KEYS = ("accession_number", "patient_id", "study_instance_uid")
AGE_BUCKETS = ((timedelta(days=1), "under 1 day"), (timedelta(days=3), "1 to 3 days"),
               (timedelta(days=7), "3 to 7 days"), (timedelta(days=30), "7 to 30 days"))
OLDEST_BUCKET = "over 30 days"
BREACH_LIMIT = 500          # breached targets listed; the count covers them all
UNASSIGNED = "(unassigned)"
WITHHELD_TITLE = "(title withheld: it may identify a patient)"


def _phi_reads() -> ColumnElement[bool]:
    """Ticket views whose event noted imaging identifiers, and every attachment download."""
    noted = or_(*(AuditEvent.details.like(f'%"{key}":%') for key in IDENTIFIER_KEYS))
    return or_(and_(AuditEvent.action == "ticket.view", noted),
               AuditEvent.action == "attachment.download")


def _pct(part: int, whole: int) -> float | None:
    """A percentage, or None when there is nothing to measure."""
    return 100.0 * part / whole if whole else None


def _sla(opened: ColumnElement[bool], resolved: ColumnElement[bool], now: datetime,
         extra: tuple[ColumnElement[bool], ...] = ()) -> dict[str, Any]:
    """First-response and resolution SLA compliance and times for one group of tickets."""
    response = db.session.execute(
        select(func.count(Ticket.first_responded_at),
               func.sum(case((Ticket.first_responded_at <= Ticket.response_due_at, 1), else_=0)),
               func.sum(case((and_(Ticket.first_responded_at.is_(None),
                                   Ticket.response_due_at < now), 1), else_=0)))
        .where(opened, *extra)).one()
    answered, answered_in_time, unanswered_late = response[0] or 0, response[1] or 0, response[2] or 0
    resolution = db.session.execute(
        select(func.count(), func.sum(case((Ticket.resolved_at <= Ticket.resolution_due_at, 1),
                                           else_=0)))
        .where(resolved, *extra)).one()
    first = seconds_between(Ticket.first_responded_at, Ticket.created_at)
    to_resolve = seconds_between(Ticket.resolved_at, Ticket.created_at) - Ticket.paused_seconds
    response_times = percentiles(first, [opened, Ticket.first_responded_at.is_not(None), *extra])
    resolve_times = percentiles(to_resolve, [resolved, *extra])
    return {
        "response_met": _pct(answered_in_time, answered + unanswered_late),
        "response_measured": answered + unanswered_late,
        "resolution_met": _pct(resolution[1] or 0, resolution[0] or 0),
        "resolution_measured": resolution[0] or 0,
        "response_median": human_duration(response_times[0]),
        "response_p90": human_duration(response_times[1]),
        "resolve_median": human_duration(resolve_times[0]),
        "resolve_p90": human_duration(resolve_times[1]),
    }


def _by(column: SQLColumnExpression[Any], label: SQLColumnExpression[Any],
        condition: ColumnElement[bool]) -> dict[Any, int]:
    """Ticket counts grouped by ``column``."""
    return {key: n for key, _, n in db.session.execute(
        select(column, label, func.count()).select_from(Ticket).join(Category)
        .where(condition).group_by(column, label))}


def _backlog(now: datetime) -> tuple[list[str], list[dict[str, Any]], int]:
    """Open tickets now by age and priority."""
    bucket = case(*((Ticket.created_at >= now - age, label) for age, label in AGE_BUCKETS),
                  else_=OLDEST_BUCKET).label("bucket")
    counts = {(b, p): n for b, p, n in db.session.execute(
        select(bucket, Ticket.priority, func.count()).where(Ticket.status.in_(ACTIVE_STATUSES))
        .group_by(bucket, Ticket.priority))}
    labels = [label for _, label in AGE_BUCKETS] + [OLDEST_BUCKET]
    rows = [{"priority": p.value, "counts": [counts.get((b, p.value), 0) for b in labels],
             "total": sum(counts.get((b, p.value), 0) for b in labels)} for p in Priority]
    return labels, rows, sum(counts.values())


@dataclass(frozen=True)
class AssetLine:
    """One of the assets most tickets were about."""

    asset_tag: str
    name: str
    kind: str
    location: str
    n: int
    still_open: int


def _top_assets(opened: ColumnElement[bool]) -> list[AssetLine]:
    """The assets most tickets were opened about in the period (named through the asset lookup)."""
    lookup = asset_lookup()
    if lookup is None:
        return []
    rows = list(db.session.execute(
        select(Ticket.asset_id, func.count().label("n"),
               func.sum(case((Ticket.status.in_(ACTIVE_STATUSES), 1), else_=0)).label("still_open"))
        .where(opened, Ticket.asset_id.is_not(None)).group_by(Ticket.asset_id)
        .order_by(func.count().desc(), Ticket.asset_id).limit(10)))
    refs = lookup.by_ids(row.asset_id for row in rows)
    lines = [AssetLine(ref.tag, ref.name, ref.kind, ref.location, row.n, row.still_open)
             for row in rows if (ref := refs.get(row.asset_id)) is not None]
    return sorted(lines, key=lambda line: (-line.n, line.asset_tag))


def _opened_chart(opened: ColumnElement[bool], start: date, end: date, lo: datetime,
                  hi: datetime) -> Any:
    """Tickets opened per local day (per month beyond three months)."""
    clock = LocalClock(dialect(), current_app.config["PACSDESK_TIMEZONE"], lo, hi)
    buckets = clock.buckets(Ticket.created_at, start, end)
    counts: dict[str, int] = dict(db.session.execute(
        select(buckets.column, func.count()).where(opened).group_by(buckets.column)).all())
    return bar_chart(buckets.labels, [("opened", [counts.get(k, 0) for k in buckets.keys])],
                     title=f"Tickets opened per {buckets.unit} (local time)")


def _clock_stopped(now: datetime) -> ColumnElement[Any]:
    """When a ticket's SLA clock last stopped (resolved, closed, waiting) or ``now`` while it runs."""
    return func.coalesce(Ticket.resolved_at, Ticket.closed_at, Ticket.waiting_since,
                         literal(now, UTCDateTime()))


def _missed(now: datetime) -> tuple[ColumnElement[bool], ColumnElement[bool]]:
    """Conditions: the first-response target was missed; the resolution target was missed."""
    stopped = _clock_stopped(now)
    response = and_(Ticket.response_due_at.is_not(None),
                    func.coalesce(Ticket.first_responded_at, stopped) > Ticket.response_due_at)
    resolution = and_(Ticket.resolution_due_at.is_not(None), stopped > Ticket.resolution_due_at)
    return response, resolution


def _people(ids: set[int]) -> dict[int, tuple[str, str]]:
    """(username, full name) of the given accounts."""
    if not ids:
        return {}
    return {row.id: (row.username, row.full_name or "") for row in db.session.execute(
        select(User.id, User.username, User.full_name).where(User.id.in_(ids)))}


def _technicians(opened: ColumnElement[bool], resolved: ColumnElement[bool],
                 now: datetime) -> list[dict[str, Any]]:
    """Per assignee: tickets assigned and resolved in the period, median times, targets missed."""
    response_missed, resolution_missed = _missed(now)
    rows = list(db.session.execute(
        select(Ticket.assignee_id,
               func.sum(case((opened, 1), else_=0)).label("assigned"),
               func.sum(case((resolved, 1), else_=0)).label("resolved"),
               func.sum(case((and_(opened, response_missed), 1), else_=0)).label("response_missed"),
               func.sum(case((and_(opened, resolution_missed), 1), else_=0)).label("resolution_missed"))
        .where(or_(opened, resolved)).group_by(Ticket.assignee_id)))
    people = _people({row.assignee_id for row in rows if row.assignee_id is not None})
    first = seconds_between(Ticket.first_responded_at, Ticket.created_at)
    to_resolve = seconds_between(Ticket.resolved_at, Ticket.created_at) - Ticket.paused_seconds
    found = []
    for row in rows:
        mine = (Ticket.assignee_id == row.assignee_id if row.assignee_id is not None
                else Ticket.assignee_id.is_(None))
        username, full_name = people.get(row.assignee_id, (UNASSIGNED, "")) \
            if row.assignee_id is not None else (UNASSIGNED, "")
        [response_median] = percentiles(first, [opened, Ticket.first_responded_at.is_not(None), mine], (0.5,))
        [resolve_median] = percentiles(to_resolve, [resolved, mine], (0.5,))
        found.append({"username": username, "full_name": full_name, "assigned": row.assigned or 0,
                      "resolved": row.resolved or 0, "response_median": human_duration(response_median),
                      "resolve_median": human_duration(resolve_median),
                      "breaches": (row.response_missed or 0) + (row.resolution_missed or 0)})
    return sorted(found, key=lambda t: (t["username"] == UNASSIGNED, t["username"]))


def _breaches(opened: ColumnElement[bool], now: datetime) -> tuple[list[dict[str, Any]], int]:
    """Tickets opened in the period that missed a target: one line per missed target, and the count."""
    response_missed, resolution_missed = _missed(now)
    rows = db.session.execute(
        select(Ticket.id, Ticket.title, Ticket.priority, Ticket.assignee_id, Ticket.accession_number,
               Ticket.patient_id, Ticket.study_instance_uid, Ticket.response_due_at,
               Ticket.first_responded_at, Ticket.resolution_due_at, Ticket.resolved_at, Ticket.closed_at,
               _clock_stopped(now).label("stopped"), response_missed.label("response_missed"),
               resolution_missed.label("resolution_missed"))
        .where(opened, or_(response_missed, resolution_missed)).order_by(Ticket.id)).all()
    people = _people({row.assignee_id for row in rows if row.assignee_id is not None})
    lines = []
    for row in rows:
        title = safe_title(row.title, (row.accession_number, row.patient_id, row.study_instance_uid))
        common = {"number": format_number(row.id),
                  "title": WITHHELD_TITLE if title == GENERIC_TITLE else title,
                  "priority": Priority(row.priority).label,
                  "assignee": people.get(row.assignee_id, (UNASSIGNED, ""))[0]}
        targets = (("First response", row.response_missed, row.response_due_at, row.first_responded_at),
                   ("Resolution", row.resolution_missed, row.resolution_due_at,
                    row.resolved_at or row.closed_at))
        for target, missed, due, met in targets:
            if missed:
                lines.append({**common, "target": target, "due": format_local(due),
                              "late": human_duration(((met or row.stopped) - due).total_seconds()),
                              "met": met is not None})
    return lines[:BREACH_LIMIT], len(lines)


def build_helpdesk(request: ReportRequest, progress: Progress) -> ReportContent:
    """Volumes, service levels, backlog and the assets behind the tickets."""
    assert request.start is not None and request.end is not None
    lo, hi = period_bounds(request.start, request.end)
    now = utcnow()
    opened = and_(Ticket.created_at >= lo, Ticket.created_at < hi)
    resolved = and_(Ticket.resolved_at >= lo, Ticket.resolved_at < hi)
    progress(10, "Tickets by category")
    opened_by_cat = _by(Category.label, Category.label, opened)
    resolved_by_cat = _by(Category.label, Category.label, resolved)
    categories = [{"label": c, "opened": opened_by_cat.get(c, 0), "resolved": resolved_by_cat.get(c, 0)}
                  for c in sorted(set(opened_by_cat) | set(resolved_by_cat))]
    progress(30, "Service levels by priority")
    opened_by_pri = _by(Ticket.priority, Ticket.priority, opened)
    resolved_by_pri = _by(Ticket.priority, Ticket.priority, resolved)
    priorities = [{"priority": p, "opened": opened_by_pri.get(p.value, 0),
                   "resolved": resolved_by_pri.get(p.value, 0),
                   **_sla(opened, resolved, now, (Ticket.priority == p.value,))} for p in Priority]
    overall = _sla(opened, resolved, now)
    progress(55, "Backlog and assets")
    age_labels, backlog, backlog_total = _backlog(now)
    total_opened, total_resolved = sum(opened_by_cat.values()), sum(resolved_by_cat.values())
    context = {
        "opened": total_opened, "resolved": total_resolved, "categories": categories,
        "priorities": priorities, "overall": overall, "age_labels": age_labels, "backlog": backlog,
        "backlog_total": backlog_total, "assets": _top_assets(opened),
        "chart": _opened_chart(opened, request.start, request.end, lo, hi) if total_opened else None,
    }
    progress(70, "Technicians and missed targets")
    context["technicians"] = _technicians(opened, resolved, now)
    context["breaches"], context["breach_total"] = _breaches(opened, now)
    context["breach_limit"] = BREACH_LIMIT
    return ReportContent("helpdesk.html", context, period_text(request.start, request.end))


PHI_RULE = PhiRule("Tickets with imaging identifiers, attachment downloads", _phi_reads,
                          IDENTIFIER_KEYS)
EXPORT_ACTIONS = {"ticket.export": "Ticket list exported"}
REPORT_KIND = ReportKind(
    key="helpdesk", title="Help desk report",
    description="Tickets opened and resolved by category and priority, service levels met, "
                "median and 90th-percentile times, the backlog by age and the assets with most tickets.",
    permission=Permission.REPORT_OPERATIONS, build=build_helpdesk, order=50,
)
