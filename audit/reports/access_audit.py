"""The access-audit report: totals, top users, exceptions, appendix and the chain verification.

Every figure is aggregated in SQL (GROUP BY); Python only reshapes the few result rows.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any

from flask import current_app
from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.sql.elements import ColumnElement

from audit.reports.charts import bar_chart
from audit.reports.identifiers import OMITTED, identifier_keys, mask_details, mask_object
from audit.reports.localtime import LocalClock
from audit.reports.registry import (
    Progress,
    ReportContent,
    ReportKind,
    ReportRequest,
    export_actions,
    phi_rules,
)
from audit.reports.services import period_bounds, period_text
from audit.trail.models import AuditEvent
from audit.trail.words import details_text, object_words
from core import audit_sink
from core.auth.models import User
from core.auth.permissions import Permission
from core.extensions import db
from core.pdf import Listing, text_columns
from core.timeutil import format_local

E = AuditEvent
LOGIN_FAILURE_ACTIONS = ("user.login_failed", "user.locked")
DENIED_ACTION = "access.denied"
REPEATED_DENIALS = 3     # refusals of one user in the period that make an exception
SUMMARY_LIMIT = 100      # rows of a per-user table
LISTING_LIMIT = 250      # events listed in an exception section
STAMP = "%Y-%m-%d %H:%M:%S"
TIME_WIDTH = 26           # "2026-11-01 01:30:00 EST" and offsets such as "+0530", with a gap
APPENDIX_COLUMNS = (("Local time", TIME_WIDTH), ("User", 18), ("Role", 12), ("Action", 24),
                    ("Object", 28), ("Address", 20), ("Outcome", 9), ("Details", 55))
EVENT_COLUMNS = (("Local time", TIME_WIDTH), ("User", 18), ("Role", 12), ("Action", 22),
                 ("Object", 23), ("Address", 18), ("Outcome", 8))
EXPORT_COLUMNS = (("Local time", TIME_WIDTH), ("User", 18), ("Action", 24), ("Address", 18),
                  ("What", 41))
FAILED_COLUMNS = (("User", 20), ("Address", 18), ("Failed", 8), ("Lockouts", 10), ("First", TIME_WIDTH),
                  ("Last", TIME_WIDTH))
DENIED_COLUMNS = (("User", 20), ("Address", 18), ("Refused", 8), ("Pages", 7), ("First", TIME_WIDTH),
                  ("Last", TIME_WIDTH))
AFTER_USER_COLUMNS = (("User", 20), ("Role", 12), ("Events", 10), ("First", TIME_WIDTH), ("Last", TIME_WIDTH))
DISABLED_COLUMNS = (("User", 16), ("Name", 16), ("Disabled on", TIME_WIDTH), ("Events", 7),
                    ("Since off", 10), ("First", TIME_WIDTH), ("Last", TIME_WIDTH))
PHI_USER_COLUMNS = (("User", 20), ("Role", 12), ("Reads", 8), ("Records", 9), ("Downloads", 10))
PHI_COLUMNS = (("User", 18), ("Record", 22), ("Action", 22), ("Times", 7), ("Last", TIME_WIDTH),
               ("Identifiers", 35))


def _when(value: datetime | None) -> str:
    """Local time as printed in every table."""
    return format_local(value, STAMP)


def _details_text(text: str | None, limit: int = 120, object_type: str | None = None) -> str:
    """Event details as short labelled text."""
    return details_text(text, limit, object_type)


class Identifiers:
    """Whether this report prints patient identifiers; when not, masks them in details and counts them."""

    def __init__(self, include: bool) -> None:
        self.include = include
        self.keys = identifier_keys()
        self.masked = 0

    def details(self, details: str | None) -> str | None:
        """Event details as this report may print them."""
        if self.include:
            return details
        shown, count = mask_details(details, self.keys)
        self.masked += count
        return shown


def _filters(request: ReportRequest) -> list[ColumnElement[bool]]:
    """The period and the optional user or object narrowing."""
    assert request.start is not None and request.end is not None  # a period report has both dates
    lo, hi = period_bounds(request.start, request.end)
    conditions = [E.occurred_at >= lo, E.occurred_at < hi]
    if request.username:
        conditions.append(func.lower(E.username) == request.username)  # lower-cased already
    if request.object_type:
        conditions.append(E.about(request.object_type, request.object_id))
    return conditions


def _rows(query: Any) -> list[Any]:
    """Run a select and return its rows."""
    return list(db.session.execute(query))


def _totals(where: ColumnElement[bool]) -> list[dict[str, Any]]:
    """Events by action and outcome."""
    found: dict[str, dict[str, Any]] = {}
    labels = audit_sink.actions()
    for action, outcome, n in _rows(select(E.action, E.outcome, func.count())
                                    .where(where).group_by(E.action, E.outcome)):
        row = found.setdefault(action, {"action": action, "label": labels.get(action, ""),
                                        "success": 0, "failure": 0})
        row[outcome if outcome in ("success", "failure") else "failure"] += n
    rows = sorted(found.values(), key=lambda r: (-(r["success"] + r["failure"]), r["action"]))
    for row in rows:
        row["total"] = row["success"] + row["failure"]
    return rows


def _top_users(where: ColumnElement[bool]) -> list[Any]:
    """The busiest accounts, with their failures."""
    failures = func.sum(case((E.outcome == "failure", 1), else_=0))
    return _rows(
        select(E.username, E.user_role, func.count().label("n"), failures.label("failures"),
               func.min(E.occurred_at).label("first"), func.max(E.occurred_at).label("last"))
        .where(where).group_by(E.username, E.user_role)
        .order_by(func.count().desc(), E.username).limit(20)
    )


def _per_day(where: ColumnElement[bool], clock: LocalClock, start: date, end: date
             ) -> tuple[Any, int]:
    """The events-per-day chart (per month beyond three months) and its peak."""
    buckets = clock.buckets(E.occurred_at, start, end)
    counts: dict[tuple[str, str], int] = {}
    for label, outcome, n in _rows(select(buckets.column, E.outcome, func.count())
                                   .where(where).group_by(buckets.column, E.outcome)):
        counts[(label, outcome)] = n
    ok = [counts.get((k, "success"), 0) for k in buckets.keys]
    bad = [counts.get((k, "failure"), 0) for k in buckets.keys]
    chart = bar_chart(buckets.labels, [("success", ok), ("failure", bad)],
                      title=f"Events per {buckets.unit} (local time)")
    return chart, max((a + b for a, b in zip(ok, bad, strict=True)), default=0)


def _failed_logins(where: ColumnElement[bool]) -> list[dict[str, Any]]:
    """Failed logins and lockouts by user and address."""
    grouped: dict[tuple[str, str], dict[str, Any]] = {}
    query = (select(E.username, E.client_address, E.action, func.count(), func.min(E.occurred_at),
                    func.max(E.occurred_at))
             .where(where, E.action.in_(LOGIN_FAILURE_ACTIONS))
             .group_by(E.username, E.client_address, E.action))
    for username, address, action, n, first, last in _rows(query):
        key = (username or "(none)", address or "")
        row = grouped.setdefault(key, {"username": key[0], "address": key[1], "failed": 0,
                                       "lockouts": 0, "first": first, "last": last})
        row["failed" if action == "user.login_failed" else "lockouts"] += n
        row["first"], row["last"] = min(row["first"], first), max(row["last"], last)
    rows = sorted(grouped.values(), key=lambda r: (-r["lockouts"], -r["failed"], r["username"]))
    for row in rows:
        row["first"], row["last"] = _when(row["first"]), _when(row["last"])
    return rows[:SUMMARY_LIMIT]


def _denials(where: ColumnElement[bool]) -> list[Any]:
    """Users refused a page or an object at least REPEATED_DENIALS times, most refused first."""
    return _rows(select(E.username, E.client_address, func.count().label("n"),
                        func.count(func.distinct(E.details)).label("pages"),
                        func.min(E.occurred_at).label("first"), func.max(E.occurred_at).label("last"))
                 .where(where, E.action == DENIED_ACTION)
                 .group_by(E.username, E.client_address)
                 .having(func.count() >= REPEATED_DENIALS)
                 .order_by(func.count().desc(), E.username).limit(SUMMARY_LIMIT))


def _after_hours(where: ColumnElement[bool], outside: ColumnElement[bool]
                 ) -> tuple[list[Any], list[Any], int]:
    """Access outside business hours: by user, and the first events themselves."""
    by_user = _rows(select(E.username, E.user_role, func.count().label("n"),
                           func.min(E.occurred_at).label("first"),
                           func.max(E.occurred_at).label("last"))
                    .where(where, outside).group_by(E.username, E.user_role)
                    .order_by(func.count().desc(), E.username))
    total = sum(row.n for row in by_user)
    by_user = by_user[:SUMMARY_LIMIT]
    events = _event_listing(where, outside)
    return by_user, events, total


def _disabled(where: ColumnElement[bool]) -> list[Any]:
    """Activity of accounts that are disabled now, and how much came after disablement."""
    later = func.sum(case((and_(User.disabled_at.is_not(None), E.occurred_at >= User.disabled_at),
                           1), else_=0))
    return _rows(select(User.username, User.full_name, User.disabled_at, func.count().label("n"),
                        later.label("after_disabled"), func.min(E.occurred_at).label("first"),
                        func.max(E.occurred_at).label("last"),
                        func.count(func.distinct(E.action)).label("actions"))
                 .join(User, User.id == E.user_id)
                 .where(where, User.is_disabled.is_(True))
                 .group_by(User.username, User.full_name, User.disabled_at)
                 .order_by(func.count().desc()).limit(SUMMARY_LIMIT))


def _event_listing(*conditions: ColumnElement[bool], join_users: bool = False) -> Any:
    """The first events matching ``conditions``, as monospace lines."""
    query = select(E.occurred_at, E.username, E.user_role, E.action, E.object_type, E.object_id,
                   E.client_address, E.outcome)
    if join_users:
        query = query.join(User, User.id == E.user_id)
    rows = ((_when(r[0]), r[1] or "", r[2] or "", r[3], object_words(r[4], r[5]),
             r[6] or "", r[7])
            for r in db.session.execute(query.where(*conditions).order_by(E.occurred_at, E.seq)
                                        .limit(LISTING_LIMIT)))
    return text_columns(EVENT_COLUMNS, rows, per_page=20, first_page=20, page_breaks=False)


def _disabled_events(where: ColumnElement[bool]) -> Any:
    """The events of disabled accounts themselves (first ones)."""
    return _event_listing(where, User.is_disabled.is_(True), join_users=True)


def _exports(where: ColumnElement[bool], ids: Identifiers) -> tuple[Any, int]:
    """Searches and exports of the audit trail, reports and bulk exports, one line each."""
    actions = sorted(export_actions())
    total = db.session.execute(select(func.count()).where(where, E.action.in_(actions))).scalar_one()
    rows = ((_when(r[0]), r[1] or "", export_actions().get(r[2], r[2])
             + ("" if r[4] == "success" else f" ({r[4]})"), r[3] or "", _details_text(ids.details(r[5]), 48))
            for r in db.session.execute(
                select(E.occurred_at, E.username, E.action, E.client_address, E.outcome, E.details)
                .where(where, E.action.in_(actions)).order_by(E.occurred_at, E.seq)
                .limit(LISTING_LIMIT)))
    return text_columns(EXPORT_COLUMNS, rows, per_page=20, first_page=20, page_breaks=False), total


def _phi_condition() -> ColumnElement[bool] | None:
    """Events that read patient identifiers, from the rules domains registered."""
    rules = [rule.predicate() for rule in phi_rules().values()]
    return or_(*rules) if rules else None


def _phi(where: ColumnElement[bool], ids: Identifiers) -> tuple[list[Any], Any, int]:
    """PHI reads by user, and by user and record (with the identifiers the event noted)."""
    condition = _phi_condition()
    if condition is None:
        return [], None, 0
    by_user = _rows(select(E.username, E.user_role, func.count().label("n"),
                           func.count(func.distinct(E.object_id)).label("records"),
                           func.sum(case((E.action == "attachment.download", 1), else_=0))
                           .label("downloads"))
                    .where(where, condition).group_by(E.username, E.user_role)
                    .order_by(func.count().desc(), E.username).limit(SUMMARY_LIMIT))
    total = db.session.execute(select(func.count()).where(where, condition)).scalar_one()
    keys = [key for rule in phi_rules().values() for key in rule.identifiers]
    records = []
    groups = _rows(select(E.username, E.object_type, E.object_id, E.action,
                          func.count().label("n"), func.min(E.occurred_at).label("first"),
                          func.max(E.occurred_at).label("last"), func.max(E.seq).label("latest"))
                   .where(where, condition)
                   .group_by(E.username, E.object_type, E.object_id, E.action)
                   .order_by(E.username, E.object_id, E.action).limit(LISTING_LIMIT))
    # The identifiers a record's latest read noted (a patient's name may have been corrected since).
    latest_details = dict(db.session.execute(
        select(E.seq, E.details).where(E.seq.in_([row.latest for row in groups]))).all()) if groups else {}
    for row in groups:
        try:
            data = json.loads(latest_details.get(row.latest) or "{}")
        except ValueError:
            data = {}
        noted = [k for k in keys if data.get(k)]
        if ids.include:
            identifiers = ", ".join(f"{k.replace('_', ' ')} {data[k]}" for k in noted)
        else:
            ids.masked += len(noted)
            identifiers = f"{len(noted)} {OMITTED}" if noted else ""
        records.append((row.username or "", object_words(row.object_type, row.object_id), row.action,
                        row.n, _when(row.last), identifiers))
    return by_user, text_columns(PHI_COLUMNS, records, per_page=20, first_page=20, page_breaks=False), total


def _listing(columns: Any, rows: list[tuple[Any, ...]]) -> Any:
    """A per-user summary as monospace lines (fast to lay out), or None when empty."""
    return text_columns(columns, rows, per_page=20, first_page=20, page_breaks=False) if rows else None


def _appendix(where: ColumnElement[bool], limit: int, ids: Identifiers) -> Listing:
    """The detail listing, oldest first (its later pages are written without layout)."""
    query = (select(E.occurred_at, E.username, E.user_role, E.action, E.object_type, E.object_id,
                    E.client_address, E.outcome, E.details)
             .where(where).order_by(E.occurred_at, E.seq).limit(limit))
    rows = (
        (_when(r[0]), r[1] or "", r[2] or "", r[3], object_words(r[4], r[5]), r[6] or "",
         r[7], _details_text(ids.details(r[8]), 60, r[4]))
        for r in db.session.execute(query)
    )
    return Listing(APPENDIX_COLUMNS, rows)


def build_access_audit(request: ReportRequest, progress: Progress) -> ReportContent:
    """Gather every section of the access-audit report."""
    assert request.start is not None and request.end is not None
    lo, hi = period_bounds(request.start, request.end)
    dialect = db.session.get_bind().dialect.name
    clock = LocalClock(dialect, current_app.config["PACSDESK_TIMEZONE"], lo, hi)
    hours = current_app.config["PACSDESK_BUSINESS_HOURS"]
    outside = clock.outside_hours(E.occurred_at, hours)
    where = and_(*_filters(request))
    ids = Identifiers(bool(request.include_identifiers))
    progress(5, "Counting events")
    total = db.session.execute(select(func.count()).where(where)).scalar_one()
    context: dict[str, Any] = {"total": total, "business_hours": _hours_text(hours),
                               "appendix_limit": request.appendix_limit,
                               "listing_limit": LISTING_LIMIT, "repeated_denials": REPEATED_DENIALS}
    if total:
        context["totals"] = _totals(where)
        context["failures"] = sum(r["failure"] for r in context["totals"])
        progress(15, "Top users")
        context["top_users"] = _top_users(where)
        progress(25, "Events per day")
        context["chart"], context["peak"] = _per_day(where, clock, request.start, request.end)
        progress(35, "Failed logins and lockouts")
        failed = _failed_logins(where)
        context["failed_logins"] = _listing(FAILED_COLUMNS, [
            (r["username"], r["address"], r["failed"], r["lockouts"], r["first"], r["last"])
            for r in failed])
        denials = _denials(where)
        context["denials"] = _listing(DENIED_COLUMNS, [
            (r.username or "(no account)", r.client_address or "", r.n, r.pages, _when(r.first),
             _when(r.last)) for r in denials])
        context["denied_events"] = _event_listing(where, E.action == DENIED_ACTION,
                                                  E.username.in_({r.username for r in denials}))
        progress(40, "Access outside business hours")
        after_by_user, context["after_events"], context["after_total"] = _after_hours(where, outside)
        context["after_by_user"] = _listing(AFTER_USER_COLUMNS, [
            (r.username or "(no account)", r.user_role, r.n, _when(r.first), _when(r.last))
            for r in after_by_user])
        progress(48, "Disabled accounts")
        context["disabled"] = _listing(DISABLED_COLUMNS, [
            (r.username, r.full_name, _when(r.disabled_at), r.n, r.after_disabled, _when(r.first),
             _when(r.last)) for r in _disabled(where)])
        context["disabled_events"] = _disabled_events(where)
        progress(52, "Searches and exports")
        context["exports"], context["exports_total"] = _exports(where, ids)
        progress(56, "Reads of patient identifiers")
        phi_by_user, context["phi_records"], context["phi_total"] = _phi(where, ids)
        context["phi_by_user"] = _listing(PHI_USER_COLUMNS, [
            (r.username or "(no account)", r.user_role, r.n, r.records, r.downloads)
            for r in phi_by_user])
        context["phi_rules"] = list(phi_rules())
        progress(60, "Detail appendix")
        context["appendix"] = _appendix(where, request.appendix_limit, ids)
        context["appendix_shown"] = min(total, request.appendix_limit)
    filters = []
    if request.username:
        filters.append(("User", request.username))
    if request.object_type:
        shown = request.object_key if ids.include else mask_object(request.object_key)
        filters.append(("Object", shown or ""))
    asked = f"included at the request of {request.requested_by}"
    filters.append(("Patient identifiers", asked if ids.include else "omitted"))
    identifiers = f"Patient identifiers {asked if ids.include else 'omitted'}"
    context.update(identifiers=identifiers, identifiers_masked=ids.masked,
                   identifiers_included=ids.include, when=_when, details_text=_details_text,
                   export_labels=export_actions(),
                   action_labels=audit_sink.actions())
    return ReportContent("access_audit.html", context, period_text(request.start, request.end),
                         filters, listing=context.get("appendix"))


DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _hours_text(hours: Any) -> str:
    """Business hours as configured, in words."""
    days, start, end = hours
    names = ", ".join(DAY_NAMES[d] for d in sorted(days))
    return f"{names} {start:%H:%M}-{end:%H:%M}"


REPORT_KIND = ReportKind(
    key="access-audit", title="Access audit report",
    description="Who did what in the period: totals, failed logins, after-hours access, "
                "disabled accounts, reads of patient identifiers, and the trail's integrity.",
    permission=Permission.REPORT_COMPLIANCE, build=build_access_audit, order=10,
    accepts_user=True, accepts_object=True, accepts_identifiers=True,
)
