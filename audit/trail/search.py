"""Audit trail search: filters in local time, keyset paging by chain position, streamed CSV."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import date
from typing import Any

from sqlalchemy import ColumnElement, Select, bindparam, column, func, literal_column, or_, select, table

from audit.trail import search_index
from audit.trail.chain import record
from audit.trail.models import AuditEvent
from core.auth.models import User
from core.database import LIKE_ESCAPE, contains_pattern
from core.extensions import db
from core.timeutil import check_day, format_local, local_day_bounds

# Audit actions recorded here (registered by the package's init_app).
AUDIT_ACTIONS = {
    "audit.search": "Audit trail searched",
    "audit.export": "Audit trail exported",
}

PER_PAGE = 50
COUNT_CAP = 10_000
# An object id typed as letters, an optional dash and a number ("PD-38", "pd38"); ids pad numbers to
# at most nine digits.
NUMBERED_ID = re.compile(r"^(?P<prefix>[A-Za-z]{1,10}-?)(?P<digits>[0-9]{1,9})$")
MAX_ID_DIGITS = 9
EXPORT_CHUNK = 5000
CSV_HEADER = ["seq", "occurred_at_local", "occurred_at_utc", "username", "user_role", "action",
              "object_type", "object_id", "outcome", "client_address", "details", "hash"]


@dataclass(frozen=True)
class AuditFilter:
    """What the compliance officer is looking for; empty fields do not filter."""

    date_from: date | None = None       # local calendar days, inclusive
    date_to: date | None = None
    username: str = ""
    action: str = ""
    object_type: str = ""
    object_id: str = ""
    outcome: str = ""
    client_address: str = ""
    words: str = ""

    def __post_init__(self) -> None:
        """Refuse dates outside the accepted years (DateOutOfRange names the field)."""
        if self.date_from is not None:
            check_day(self.date_from, "date_from", "From")
        if self.date_to is not None:
            check_day(self.date_to, "date_to", "To")

    def describe(self) -> dict[str, str]:
        """The filters in force, for the audit event that records the search."""
        return {k: str(v) for k, v in asdict(self).items() if v not in (None, "")}


@dataclass(frozen=True)
class EventPage:
    """One page of events, newest first, with the cursors for the neighbouring pages."""

    events: list[AuditEvent]
    older_than: int | None      # pass as ``before`` to see older events
    newer_than: int | None      # pass as ``after`` to see newer events


_FTS = table(search_index.FTS_TABLE, column("rowid"))


def filtered_select(flt: AuditFilter) -> tuple[Select, Any]:
    """The events matching ``flt`` (unordered) and the column that orders them by chain position.

    Chain positions and row ids grow together (both are assigned under the chain lock), so
    on SQLite a word search walks the word index in row-id order and stops at a page.
    """
    query = select(AuditEvent)
    order: Any = AuditEvent.seq
    lower, upper = local_day_bounds(flt.date_from, flt.date_to)
    if lower is not None:
        query = query.where(AuditEvent.occurred_at >= lower)
    if upper is not None:
        query = query.where(AuditEvent.occurred_at < upper)
    if flt.username.strip():
        query = query.where(user_condition(flt.username))
    if flt.action:
        query = query.where(AuditEvent.action == flt.action)
    if flt.object_type.strip():
        query = query.where(AuditEvent.object_type.icontains(flt.object_type.strip(), autoescape=True))
    if flt.object_id.strip():
        query = query.where(object_condition(flt.object_id))
    if flt.outcome:
        query = query.where(AuditEvent.outcome == flt.outcome)
    if flt.client_address:
        query = query.where(AuditEvent.client_address == flt.client_address.strip())
    words = flt.words.split()
    found = search_index.tokens(flt.words) if search_index.index_present() else []
    if found:
        if db.session.get_bind().dialect.name == "postgresql":
            match = search_index.POSTGRES_MATCH.bindparams(tsquery=search_index.postgres_tsquery(found))
            if set(found) <= search_index.common_words():
                query = query.where(match)
            else:
                rare = select(AuditEvent.id).where(match).cte("word_matches").prefix_with("MATERIALIZED")
                query = query.where(AuditEvent.id.in_(select(rare.c.id)))
        else:
            query = query.join(_FTS, _FTS.c.rowid == AuditEvent.id).where(
                literal_column(search_index.FTS_TABLE).op("MATCH")(search_index.sqlite_match(found)))
            order = _FTS.c.rowid
    for word in words:
        if search_index.tokens(word) != [word.lower()] or not found:
            # a word with punctuation must also appear literally ("HD-000123", "100%")
            query = query.where(AuditEvent.details.icontains(word, autoescape=True))
    return query, order


# Users whose username or full name contains a LIKE pattern, any case (built once: a search runs it).
_PEOPLE = select(User.id, User.username).where(or_(
    func.lower(User.username).like(func.lower(bindparam("pattern")), escape=LIKE_ESCAPE),
    func.lower(User.full_name).like(func.lower(bindparam("pattern")), escape=LIKE_ESCAPE)))


def user_condition(text: str) -> ColumnElement[bool]:
    """Events of users whose username or full name contains ``text`` (any case), or of that name typed.

    The people are looked up first in the (small) user table, then their events through the
    indexes on the user id and on the lower-cased username, so no search reads the whole
    trail. A name typed at the login that no account has matches when typed whole, in any case.
    """
    term = text.strip()
    people = db.session.execute(_PEOPLE, {"pattern": contains_pattern(term)}).all()
    names = sorted({username.lower() for _, username in people} | {term.lower()})
    typed = func.lower(AuditEvent.username).in_(names)
    if not people:
        return typed  # an empty IN would cost the plan a subquery per search
    return or_(AuditEvent.user_id.in_(sorted(user_id for user_id, _ in people)), typed)


def object_condition(text: str) -> ColumnElement[bool]:
    """Objects whose id is ``text`` however written, or contains it (any case).

    An id typed as letters and a number ("PD-38", "pd38", "CT-02") finds that object, padded or
    not ("PD-000038"), through the index on the lower-cased id. Anything else (a bare number,
    a name) is matched as part of an id, which reads every event the other filters leave.
    """
    term = text.strip()
    lowered = func.lower(AuditEvent.object_id)
    numbered = NUMBERED_ID.match(term)
    if numbered is None:
        return AuditEvent.object_id.icontains(term, autoescape=True)
    stem = numbered.group("prefix").lower().rstrip("-")
    digits = numbered.group("digits").lstrip("0") or "0"
    padded = {f"{stem}{dash}{digits.zfill(width)}" for dash in ("", "-")
              for width in range(len(digits), MAX_ID_DIGITS + 1)}
    return lowered.in_(sorted(padded | {term.lower()}))


def count_events(flt: AuditFilter) -> int:
    """How many events match, counted up to COUNT_CAP (more shows as "more than")."""
    query, _ = filtered_select(flt)
    capped = query.with_only_columns(AuditEvent.id).limit(COUNT_CAP + 1).subquery()
    return int(db.session.execute(select(func.count()).select_from(capped)).scalar_one())


def find_events(flt: AuditFilter, before: int | None = None, after: int | None = None,
                per_page: int = PER_PAGE) -> EventPage:
    """A page of matching events by chain position, without counting the whole trail."""
    query, order = filtered_select(flt)
    if after is not None:
        rows = list(db.session.execute(
            query.where(AuditEvent.seq > after).order_by(order.asc()).limit(per_page + 1)
        ).scalars())
        has_newer = len(rows) > per_page
        events = list(reversed(rows[:per_page]))
        has_older = True
    else:
        if before is not None:
            query = query.where(AuditEvent.seq < before)
        rows = list(db.session.execute(query.order_by(order.desc()).limit(per_page + 1)).scalars())
        has_older = len(rows) > per_page
        events = rows[:per_page]
        has_newer = before is not None
    return EventPage(
        events=events,
        older_than=events[-1].seq if events and has_older else None,
        newer_than=events[0].seq if events and has_newer else None,
    )


def search_events(flt: AuditFilter, before: int | None = None, after: int | None = None,
                  per_page: int = PER_PAGE) -> EventPage:
    """Search the trail and record the search itself (audit log used)."""
    page = find_events(flt, before, after, per_page)
    record("audit.search", object_type="audit_event",
           details={"filters": flt.describe(), "before": before, "after": after,
                    "shown": len(page.events)})
    return page


def record_export(flt: AuditFilter) -> None:
    """Record an export of the trail before it is streamed."""
    record("audit.export", object_type="audit_event",
           details={"filters": flt.describe(), "format": "csv"})


def safe_cell(value: object) -> str:
    """A CSV cell that a spreadsheet will not run as a formula."""
    text = "" if value is None else str(value)
    if text and text[0] in "=+-@\t\r":
        return "'" + text
    return text


def export_rows(flt: AuditFilter) -> Iterator[str]:
    """CSV text of every matching event, newest first, in chunks that each end their transaction."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_HEADER)
    yield buffer.getvalue()
    before: int | None = None
    while True:
        query, order = filtered_select(flt)
        if before is not None:
            query = query.where(AuditEvent.seq < before)
        events = list(db.session.execute(query.order_by(order.desc()).limit(EXPORT_CHUNK)).scalars())
        db.session.rollback()
        if not events:
            return
        buffer.seek(0)
        buffer.truncate()
        for e in events:
            writer.writerow([safe_cell(v) for v in (
                e.seq, format_local(e.occurred_at, "%Y-%m-%d %H:%M:%S"),
                e.occurred_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), e.username, e.user_role,
                e.action, e.object_type, e.object_id, e.outcome, e.client_address, e.details,
                e.hash)])
        yield buffer.getvalue()
        before = events[-1].seq
        db.session.expunge_all()
