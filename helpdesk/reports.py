"""The help desk's part of the reports: its PDF report and which audit events read PHI."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import SQLColumnExpression, and_, case, func, or_, select
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
from core.auth.permissions import Permission
from core.extensions import db
from core.timeutil import utcnow
from helpdesk.assets import asset_lookup
from helpdesk.models import ACTIVE_STATUSES, Category, Priority, Ticket

IDENTIFIER_KEYS = ("accession_number", "patient_id", "study_instance_uid")
AGE_BUCKETS = ((timedelta(days=1), "under 1 day"), (timedelta(days=3), "1 to 3 days"),
               (timedelta(days=7), "3 to 7 days"), (timedelta(days=30), "7 to 30 days"))
OLDEST_BUCKET = "over 30 days"


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
