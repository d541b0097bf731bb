"""Legal holds: placed with a reason and a scope that must cover something, released once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from audit.retention.models import LegalHold
from audit.retention.registry import HoldScope, RecordClass, record_classes, scope_matcher
from audit.trail.chain import record
from audit.trail.models import AuditEvent
from core.auth.models import Role, User
from core.database import rowcount
from core.extensions import db
from core.forms import FieldError
from core.mail.compose import Notice
from core.notifications import notify, users_with_roles
from core.timeutil import format_local, utcnow

HOLD_OBJECT_TYPES = ("ticket", "asset", "user")
# Holds on imaging studies kept on the archives: what they cover is checked against the archive
# when a study review runs, not here (PACS Desk keeps no copy of the archive's index).
STUDY_HOLD_TYPES = {"patient": "patient ID", "accession": "accession number", "study": "Study Instance UID"}
STUDY_DATES = "study_dates"
STUDY_KEY_LENGTH = 64
SCAN_BATCH = 10000

# Audit actions recorded here (registered by the package's init_app).
AUDIT_ACTIONS = {
    "retention.hold_placed": "Legal hold placed",
    "retention.hold_released": "Legal hold released",
}


class RetentionError(FieldError):
    """A retention operation was refused; ``field`` names the form field at fault."""


def active_holds() -> list[LegalHold]:
    """Holds not yet released, oldest first."""
    return list(db.session.execute(
        select(LegalHold).where(LegalHold.released_at.is_(None)).order_by(LegalHold.id)).scalars())


def hold_scope(hold: LegalHold) -> HoldScope:
    """A hold in the terms record classes understand."""
    return HoldScope(record_class=hold.record_class, object_type=hold.object_type,
                     object_key=hold.object_key, start=hold.start, end=hold.end)


def describe_scope(hold: LegalHold) -> str:
    """What a hold covers, in words."""
    if hold.object_type == STUDY_DATES:
        return f"imaging studies dated {format_local(hold.start, '%Y-%m-%d') or 'any day'} to " \
               f"{format_local(hold.end, '%Y-%m-%d') or 'any day'}"
    if hold.object_type in STUDY_HOLD_TYPES:
        return f"imaging studies of {STUDY_HOLD_TYPES[hold.object_type]} {hold.object_key}"
    if hold.object_type:
        return f"{hold.object_type} {hold.object_key}"
    label = record_classes()[hold.record_class].label if hold.record_class in record_classes() \
        else hold.record_class
    span = f"{format_local(hold.start, '%Y-%m-%d') or 'the beginning'} to " \
           f"{format_local(hold.end, '%Y-%m-%d') or 'now'}"
    return f"{label}, {span}"


def _scan_matches(rc: RecordClass, scope: HoldScope) -> bool:
    """Whether any of ``rc``'s records falls under ``scope`` (scans its candidates in batches)."""
    cutoff = utcnow() + timedelta(days=366 * 200)
    last = None
    while True:
        sub = rc.candidates(cutoff, rc.anchors[0]).subquery()
        id_col = next(iter(sub.c))
        query = select(id_col).order_by(id_col).limit(SCAN_BATCH)
        if last is not None:
            query = query.where(id_col > last)
        ids = list(db.session.execute(query).scalars())
        if not ids:
            return False
        if rc.held(ids, [scope]):
            return True
        last = ids[-1]


def scope_matches(scope: HoldScope) -> bool:
    """Whether a hold's scope covers anything PACS Desk keeps (imaging study scopes always may)."""
    if scope.object_type in STUDY_HOLD_TYPES or scope.object_type == STUDY_DATES:
        return True
    if scope.object_type and scope.object_key:
        about = AuditEvent.about(scope.object_type, scope.object_key)
        trail = db.session.execute(select(AuditEvent.id).where(about).limit(1)).first()
        if trail is not None:
            return True
    keys = [scope.record_class] if scope.record_class else sorted(record_classes())
    for key in keys:
        rc = record_classes()[key]
        matcher = scope_matcher(key)
        if matcher(scope) if matcher else _scan_matches(rc, scope):
            return True
    return False


@dataclass(frozen=True)
class NewHold:
    """What it takes to place a legal hold."""

    reason: str
    kind: str                    # ticket, asset, user, class, patient, accession, study or study_dates
    object_key: str = ""
    record_class: str = ""
    start: datetime | None = None
    end: datetime | None = None


def _study_key(kind: str, value: str) -> str:
    """A patient ID, accession number or study UID for a hold, or RetentionError naming the field."""
    key = value.strip()
    label = STUDY_HOLD_TYPES[kind]
    if not key:
        raise RetentionError(f"Give the {label} this hold covers.", "object_key")
    if len(key) > STUDY_KEY_LENGTH or any(c in key for c in "\\*?") or not key.isprintable():
        raise RetentionError(f"A {label} has at most {STUDY_KEY_LENGTH} printable characters and no "
                             "backslash or wildcard.", "object_key")
    if kind == "study" and not all(part.isdigit() for part in key.split(".")):
        raise RetentionError("A Study Instance UID is digits separated by dots (1.2.840...).", "object_key")
    return key


def place_hold(new: NewHold, user: Any) -> LegalHold:
    """Place a legal hold after checking that its scope covers something (flushes and audits)."""
    reason = new.reason.strip()
    if not reason:
        raise RetentionError("Give the reason for the hold (case, investigation or audit).", "reason")
    if new.kind in HOLD_OBJECT_TYPES:
        key = new.object_key.strip()
        if not key:
            raise RetentionError(f"Give the {new.kind} this hold covers.", "object_key")
        if new.kind == "user":
            key = key.lower()
            if db.session.execute(select(User.id).where(User.username == key)).first() is None:
                raise RetentionError(f"There is no user '{key}'.", "object_key")
        scope = HoldScope(object_type=new.kind, object_key=key)
    elif new.kind in STUDY_HOLD_TYPES:
        scope = HoldScope(object_type=new.kind, object_key=_study_key(new.kind, new.object_key))
    elif new.kind == STUDY_DATES:
        if new.start is None and new.end is None:
            raise RetentionError("Give the first or last study date the hold covers, or both.", "start")
        if new.start and new.end and new.start > new.end:
            raise RetentionError("The range starts after it ends.", "start")
        scope = HoldScope(object_type=STUDY_DATES, start=new.start, end=new.end)
    elif new.kind == "class":
        if new.record_class not in record_classes():
            raise RetentionError("Choose a record class.", "record_class")
        if new.start and new.end and new.start > new.end:
            raise RetentionError("The range starts after it ends.", "start")
        scope = HoldScope(record_class=new.record_class, start=new.start, end=new.end)
    else:
        raise RetentionError("Choose what the hold covers.", "kind")
    if not scope_matches(scope):
        raise RetentionError("This hold's scope matches no record: check the number, tag, user or "
                             "dates.", "object_key" if scope.object_type else "record_class")
    hold = LegalHold(reason=reason, placed_by_id=user.id, placed_at=utcnow(),
                     record_class=scope.record_class, object_type=scope.object_type,
                     object_key=scope.object_key, start=scope.start, end=scope.end)
    db.session.add(hold)
    db.session.flush()
    record("retention.hold_placed", object_type="legal_hold", object_id=hold.id,
           details={"reason": reason, "scope": describe_scope(hold)})
    notify("audit.legal_hold", users_with_roles(Role.COMPLIANCE), Notice(
        subject=f"Legal hold #{hold.id} placed",
        paragraphs=(f"Legal hold #{hold.id} was placed by {user.username}. Destruction is suspended for "
                    "what it covers until it is released.",),
        link_path="/retention", link_label="Open retention"))
    return hold


def release_hold(hold_id: int, reason: str, user: Any) -> LegalHold:
    """Release a hold once; the release is recorded (flushes and audits)."""
    hold = db.session.get(LegalHold, hold_id)
    if hold is None:
        raise RetentionError(f"There is no legal hold #{hold_id}.")
    if hold.released_at is not None:
        raise RetentionError(f"Legal hold #{hold.id} was already released on "
                             f"{format_local(hold.released_at)}.")
    if not reason.strip():
        raise RetentionError("Give the reason for releasing the hold.", "reason")
    released = rowcount(db.session.execute(
        update(LegalHold).where(LegalHold.id == hold_id, LegalHold.released_at.is_(None))
        .values(released_at=utcnow(), released_by_id=user.id, release_reason=reason.strip())))
    if released != 1:
        raise RetentionError(f"Legal hold #{hold_id} was already released.")
    db.session.refresh(hold)
    record("retention.hold_released", object_type="legal_hold", object_id=hold.id,
           details={"reason": reason.strip(), "scope": describe_scope(hold)})
    notify("audit.legal_hold", users_with_roles(Role.COMPLIANCE), Notice(
        subject=f"Legal hold #{hold.id} released",
        paragraphs=(f"Legal hold #{hold.id} was released by {user.username}. What it covered follows the "
                    "retention policies again.",),
        link_path="/retention", link_label="Open retention"))
    return hold
