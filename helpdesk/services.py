"""Ticket operations: each validates, writes history and its audit event, and only flushes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import select

from audit import record
from core.auth.models import User
from core.auth.permissions import Permission, has_permission
from core.extensions import db
from core.forms import FieldError
from core.timeutil import utcnow
from helpdesk import notifications, sla
from helpdesk.assets import AssetRef, asset_lookup, asset_ref
from helpdesk.attachments import AttachmentError, CheckedFile, Upload, check_uploads
from helpdesk.models import (
    ACTIVE_STATUSES,
    Category,
    Priority,
    Ticket,
    TicketAttachment,
    TicketComment,
    TicketStatus,
)
from helpdesk.search import index_ticket

# Audit actions recorded here (registered by the package's init_app).
AUDIT_ACTIONS = {
    "ticket.create": "Ticket filed",
    "ticket.update": "Ticket changed",
    "ticket.comment": "Reply or internal note added to a ticket",
    "attachment.upload": "Attachment uploaded",
}

TITLE_MAX = 200
DESCRIPTION_MAX = 20000
REPLY_MAX = 20000

IMPACTS = {
    "care_stopped": "Patient care is stopped",
    "many": "Several people or a whole area are affected",
    "one": "One person or one workstation is affected",
    "minor": "Minor: a question or an inconvenience",
}
URGENCIES = {
    "now": "It cannot wait: needed right now",
    "hours": "Needed within a few hours",
    "today": "Needed today",
    "later": "It can wait a few days",
}


class TicketError(FieldError):
    """A ticket operation was refused; ``field`` names the form field at fault."""


def suggested_priority(impact: str, urgency: str) -> str:
    """Initial priority from the requester's impact and urgency (technicians can change it)."""
    score = list(IMPACTS).index(impact) + list(URGENCIES).index(urgency)
    return ("P1", "P2", "P2", "P3", "P3", "P4", "P4")[score]


def _text(value: str | None, label: str, field: str, maximum: int, required: bool = False) -> str:
    """Strip ``value``; check presence and length."""
    value = (value or "").replace("\x00", "").strip()
    if required and not value:
        raise TicketError(f"{label}: this field is required.", field)
    if len(value) > maximum:
        raise TicketError(f"{label}: at most {maximum} characters (this has {len(value)}).", field)
    return value


def _category(category_id: int | None) -> Category:
    """An active category or a TicketError."""
    category = db.session.get(Category, category_id) if category_id is not None else None
    if category is None or not category.is_active:
        raise TicketError("Category: choose one of the listed categories.", "category_id")
    return category


def _asset(tag: str | None, actor: User | None = None) -> AssetRef | None:
    """The asset tagged ``tag`` in any case (None for an empty tag), or a TicketError.

    Someone who may not read the inventory may name only the assets offered to them, and gets
    the same refusal for a tag that does not exist and one they may not name (no oracle).
    """
    if not tag or not tag.strip():
        return None
    lookup = asset_lookup()
    restricted = actor is not None and not has_permission(actor, Permission.ASSET_READ)
    asset = lookup.by_tag(tag.strip(), for_user=actor if restricted else None) if lookup is not None else None
    if asset is None and restricted:
        raise TicketError("Asset tag: not one of the devices you can choose; pick one from the list "
                          "offered as you type, or leave it empty and say where the device is.", "asset_tag")
    if asset is None:
        raise TicketError(f"Asset: no asset has the tag {tag.strip()[:40]!r}.", "asset_tag")
    return asset


def _store_files(ticket: Ticket, files: Sequence[CheckedFile], actor: User | None,
                 comment: TicketComment | None, at: datetime) -> None:
    """Store checked files and audit each upload."""
    for item in files:
        attachment = TicketAttachment(ticket_id=ticket.id, comment_id=comment.id if comment else None,
                                      filename=item.filename, content_type=item.content_type,
                                      size=item.size, sha256=item.sha256, data=item.data,
                                      uploaded_by_id=actor.id if actor else None, created_at=at)
        db.session.add(attachment)
        db.session.flush()
        record("attachment.upload", object_type="ticket", object_id=ticket.number, user=actor,
               details={"attachment_id": attachment.id, "filename": item.filename,
                        "size": item.size, "sha256": item.sha256,
                        "internal": bool(comment and comment.is_internal)})


def _checked(uploads: Sequence[Upload]) -> list[CheckedFile]:
    """Check uploads, turning a refusal into a TicketError on the attachments field."""
    try:
        return check_uploads(list(uploads))
    except AttachmentError as exc:
        raise TicketError(f"Attachments: {exc}", "attachments") from None


@dataclass(frozen=True)
class NewTicket:
    """What a person states when filing a ticket."""

    title: str
    description: str
    category_id: int | None
    impact: str
    urgency: str
    location: str = ""
    callback_phone: str = ""
    accession_number: str = ""
    patient_id: str = ""
    study_instance_uid: str = ""
    asset_tag: str = ""
    priority: str | None = None       # technicians only
    requester_username: str = ""      # technicians only: file for this person


def _identifiers(new: NewTicket) -> dict[str, str]:
    """Check the optional imaging identifiers."""
    values = {
        "accession_number": _text(new.accession_number, "Accession number", "accession_number", 64),
        "patient_id": _text(new.patient_id, "Patient ID", "patient_id", 64),
        "study_instance_uid": _text(new.study_instance_uid, "Study instance UID",
                                    "study_instance_uid", 64),
    }
    uid = values["study_instance_uid"]
    if uid and (not all(c.isdigit() or c == "." for c in uid) or ".." in uid
                or uid.startswith(".") or uid.endswith(".")):
        raise TicketError("Study instance UID: digits separated by dots, e.g. 1.2.840.113619.2.55.3",
                          "study_instance_uid")
    return values


def _on_behalf_of(username: str) -> User:
    """The active account a technician files a ticket for (a phone call, a walk-up)."""
    user = db.session.execute(
        select(User).where(User.username == username.strip().lower())).scalar_one_or_none()
    if user is None or user.is_disabled:
        raise TicketError(f"Requester: no active account is called {username.strip()[:64]!r}.",
                          "requester_username")
    return user


def create_ticket(new: NewTicket, actor: User, uploads: Sequence[Upload] = ()) -> Ticket:
    """File a ticket by ``actor`` (for ``new.requester_username`` when a technician says so)."""
    requester = actor
    if new.requester_username.strip() and has_permission(actor, Permission.TICKET_WORK):
        requester = _on_behalf_of(new.requester_username)
    title = _text(new.title, "Title", "title", TITLE_MAX, required=True)
    description = _text(new.description, "Description", "description", DESCRIPTION_MAX, required=True)
    category = _category(new.category_id)
    if new.impact not in IMPACTS:
        raise TicketError("Impact: choose one of the listed answers.", "impact")
    if new.urgency not in URGENCIES:
        raise TicketError("Urgency: choose one of the listed answers.", "urgency")
    priority = suggested_priority(new.impact, new.urgency)
    if new.priority and has_permission(actor, Permission.TICKET_WORK):
        if new.priority not in set(Priority):
            raise TicketError("Priority: choose P1, P2, P3 or P4.", "priority")
        priority = new.priority
    identifiers = _identifiers(new)
    asset = _asset(new.asset_tag, actor)
    files = _checked(uploads)
    now = utcnow()
    ticket = Ticket(title=title, description=description, category_id=category.id,
                    priority=priority, status=TicketStatus.NEW, impact=new.impact,
                    urgency=new.urgency, requester_id=requester.id,
                    asset_id=asset.id if asset else None,
                    location=_text(new.location, "Location", "location", 200),
                    callback_phone=_text(new.callback_phone, "Call-back phone", "callback_phone", 40),
                    created_at=now, updated_at=now, **identifiers)
    db.session.add(ticket)
    db.session.flush()
    sla.apply_sla(ticket)
    index_ticket(ticket)
    on_behalf = {"requester": requester.username} if requester is not actor else {}
    record("ticket.create", object_type="ticket", object_id=ticket.number, user=actor,
           details={"title": title, "category": category.code, "priority": priority,
                    "attachments": len(files), **on_behalf, **ticket.phi_identifiers()})
    _store_files(ticket, files, actor, None, now)
    db.session.flush()
    notifications.queue_signal(db.session(), notifications.ticket_created,
                               ticket_id=ticket.id, number=ticket.number, system=False)
    return ticket


_UNSET: Any = object()

ALLOWED_TARGETS = (TicketStatus.OPEN, TicketStatus.WAITING,
                   TicketStatus.RESOLVED, TicketStatus.CLOSED)


def _assignee(user_id: int | None) -> User | None:
    """A technician who can work tickets, or a TicketError."""
    if user_id is None:
        return None
    user = db.session.get(User, user_id)
    if user is None or user.is_disabled or not has_permission(user, Permission.TICKET_WORK):
        raise TicketError("Assignee: choose a technician from the list.", "assignee_id")
    return user


def _set_status(ticket: Ticket, new: TicketStatus, actor: User | None, now: datetime,
                changes: dict[str, list[Any]]) -> None:
    """Move the ticket to ``new``, keeping the SLA clock and the resolution dates right."""
    old = ticket.status
    if new == old:
        return
    ticket.status = new
    sla.on_status_change(ticket, old, new, now)
    if new == TicketStatus.RESOLVED:
        ticket.resolved_at = now
    elif new in (TicketStatus.OPEN, TicketStatus.NEW, TicketStatus.WAITING):
        ticket.resolved_at = None
    if new == TicketStatus.CLOSED:
        ticket.closed_at = now
    changes["status"] = [old, new]
    notifications.queue_signal(db.session(), notifications.status_changed, ticket_id=ticket.id,
                               number=ticket.number, old=old, new=new)


def update_ticket(ticket: Ticket, actor: User, *, status: str | None = None,
                  priority: str | None = None, category_id: int | None = None,
                  assignee_id: Any = _UNSET, asset_tag: str | None = None) -> dict[str, list[Any]]:
    """Technicians change status, priority, category, assignee or asset; returns what changed."""
    if ticket.status == TicketStatus.CLOSED:
        raise TicketError("This ticket is closed and can no longer change; file a new one.")
    now = utcnow()
    changes: dict[str, list[Any]] = {}
    if priority is not None and priority != ticket.priority:
        if priority not in set(Priority):
            raise TicketError("Priority: choose P1, P2, P3 or P4.", "priority")
        changes["priority"] = [ticket.priority, priority]
        ticket.priority = Priority(priority)
        sla.apply_sla(ticket)
    if category_id is not None and category_id != ticket.category_id:
        category = _category(category_id)
        changes["category"] = [ticket.category.code, category.code]
        ticket.category_id = category.id
        ticket.category = category
    if assignee_id is not _UNSET and assignee_id != ticket.assignee_id:
        user = _assignee(assignee_id)
        old_name = ticket.assignee.username if ticket.assignee else None
        changes["assignee"] = [old_name, user.username if user else None]
        ticket.assignee_id = user.id if user else None
        ticket.assignee = user
    if asset_tag is not None:
        asset = _asset(asset_tag)
        if (asset.id if asset else None) != ticket.asset_id:
            old = asset_ref(ticket.asset_id)
            old_tag, new_tag = (old.tag if old else None), (asset.tag if asset else None)
            changes["asset"] = [old_tag, new_tag]
            ticket.asset_id = asset.id if asset else None
    if status is not None and status != ticket.status:
        if status not in ALLOWED_TARGETS:
            raise TicketError("Status: choose open, waiting on requester, resolved or closed.", "status")
        _set_status(ticket, TicketStatus(status), actor, now, changes)
    if changes:
        ticket.updated_at = now
        record("ticket.update", object_type="ticket", object_id=ticket.number, user=actor,
               details={"changes": changes})
        db.session.flush()
    return changes


def add_reply(ticket: Ticket, author: User, body: str, internal: bool = False,
              uploads: Sequence[Upload] = ()) -> TicketComment:
    """Add a public reply or internal note with attachments; audited as ticket.comment."""
    if internal and not has_permission(author, Permission.TICKET_WORK):
        raise TicketError("Only the PACS team writes internal notes.", "internal")
    if ticket.status == TicketStatus.CLOSED:
        raise TicketError("This ticket is closed; file a new ticket to continue.", "body")
    body = _text(body, "Reply", "body", REPLY_MAX, required=True)
    files = _checked(uploads)
    now = utcnow()
    comment = TicketComment(ticket_id=ticket.id, author_id=author.id, is_internal=internal,
                            body=body, created_at=now)
    db.session.add(comment)
    db.session.flush()
    changes: dict[str, list[Any]] = {}
    is_staff = has_permission(author, Permission.TICKET_WORK)
    if is_staff and not internal and author.id != ticket.requester_id:
        sla.on_first_response(ticket, now)
        if ticket.status == TicketStatus.NEW:
            _set_status(ticket, TicketStatus.OPEN, author, now, changes)
    elif author.id == ticket.requester_id and ticket.status == TicketStatus.WAITING:
        _set_status(ticket, TicketStatus.OPEN, author, now, changes)
    ticket.updated_at = now
    record("ticket.comment", object_type="ticket", object_id=ticket.number, user=author,
           details={"comment_id": comment.id, "internal": internal, "attachments": len(files)})
    if changes:
        record("ticket.update", object_type="ticket", object_id=ticket.number, user=author,
               details={"changes": changes})
    _store_files(ticket, files, author, comment, now)
    db.session.flush()
    notifications.queue_signal(db.session(), notifications.ticket_replied, ticket_id=ticket.id,
                               number=ticket.number, comment_id=comment.id, internal=internal)
    return comment


def reopen_deadline(ticket: Ticket) -> datetime | None:
    """Until when the requester may reopen a resolved ticket."""
    if ticket.status != TicketStatus.RESOLVED or ticket.resolved_at is None:
        return None
    return ticket.resolved_at + timedelta(days=current_app.config["PACSDESK_AUTOCLOSE_DAYS"])


def reopen_ticket(ticket: Ticket, actor: User) -> None:
    """Reopen a resolved ticket within the auto-close window; audited as ticket.update."""
    deadline = reopen_deadline(ticket)
    if deadline is None:
        raise TicketError("Only a resolved ticket can be reopened.")
    if utcnow() > deadline and not has_permission(actor, Permission.TICKET_WORK):
        raise TicketError("The time to reopen this ticket has passed; file a new ticket.")
    changes: dict[str, list[Any]] = {}
    now = utcnow()
    _set_status(ticket, TicketStatus.OPEN, actor, now, changes)
    ticket.updated_at = now
    record("ticket.update", object_type="ticket", object_id=ticket.number, user=actor,
           details={"changes": changes, "reopened": True})
    db.session.flush()


def autoclose_resolved(now: datetime | None = None) -> list[str]:
    """Close tickets resolved longer ago than the auto-close window; returns their numbers."""
    now = now or utcnow()
    cutoff = now - timedelta(days=current_app.config["PACSDESK_AUTOCLOSE_DAYS"])
    tickets = db.session.execute(
        select(Ticket).where(Ticket.status == TicketStatus.RESOLVED,
                             Ticket.resolved_at <= cutoff).order_by(Ticket.id)
    ).scalars().all()
    for ticket in tickets:
        changes: dict[str, list[Any]] = {}
        _set_status(ticket, TicketStatus.CLOSED, None, now, changes)
        ticket.updated_at = now
        record("ticket.update", object_type="ticket", object_id=ticket.number, user=None,
               client_address=None, details={"changes": changes, "autoclosed": True})
    db.session.flush()
    return [t.number for t in tickets]


def find_open_system_ticket(dedup_key: str) -> Ticket | None:
    """The unresolved ticket opened for ``dedup_key``, if any."""
    return db.session.execute(
        select(Ticket).where(Ticket.dedup_key == dedup_key, Ticket.status.in_(ACTIVE_STATUSES))
        .order_by(Ticket.id.desc()).limit(1)
    ).scalar_one_or_none()


def open_system_ticket(dedup_key: str, title: str, description: str,
                       category_code: str = "dicom_node_down", priority: str = "P2",
                       asset_id: int | None = None) -> Ticket:
    """Open a ticket on behalf of PACS Desk itself, unless one is already open for ``dedup_key``."""
    existing = find_open_system_ticket(dedup_key)
    if existing is not None:
        return existing
    category = db.session.execute(
        select(Category).where(Category.code == category_code)
    ).scalar_one_or_none()
    if category is None:
        raise ValueError(f"unknown ticket category code {category_code!r}")
    if priority not in set(Priority):
        raise ValueError(f"unknown priority {priority!r}")
    now = utcnow()
    ticket = Ticket(title=title[:TITLE_MAX], description=description[:DESCRIPTION_MAX],
                    category_id=category.id, priority=priority, status=TicketStatus.NEW,
                    requester_id=None, asset_id=asset_id, dedup_key=dedup_key,
                    created_at=now, updated_at=now)
    db.session.add(ticket)
    db.session.flush()
    sla.apply_sla(ticket)
    index_ticket(ticket)
    record("ticket.create", object_type="ticket", object_id=ticket.number, user=None,
           details={"title": ticket.title, "category": category.code, "priority": priority,
                    "dedup_key": dedup_key, "system": True})
    db.session.flush()
    notifications.queue_signal(db.session(), notifications.ticket_created,
                               ticket_id=ticket.id, number=ticket.number, system=True)
    return ticket


def add_system_reply(ticket: Ticket, body: str) -> None:
    """Add a public reply written by PACS Desk itself; audited as ticket.comment."""
    now = utcnow()
    comment = TicketComment(ticket_id=ticket.id, author_id=None, is_internal=False,
                            body=body[:REPLY_MAX], created_at=now)
    db.session.add(comment)
    db.session.flush()
    ticket.updated_at = now
    record("ticket.comment", object_type="ticket", object_id=ticket.number, user=None,
           details={"comment_id": comment.id, "internal": False, "system": True})
    notifications.queue_signal(db.session(), notifications.ticket_replied, ticket_id=ticket.id,
                               number=ticket.number, comment_id=comment.id, internal=False)


def resolve_system_ticket(ticket: Ticket, body: str) -> None:
    """Reply and mark the ticket resolved, on behalf of PACS Desk; audited as ticket.update."""
    add_system_reply(ticket, body)
    if ticket.status in (TicketStatus.RESOLVED, TicketStatus.CLOSED):
        return
    now = utcnow()
    changes: dict[str, list[Any]] = {}
    _set_status(ticket, TicketStatus.RESOLVED, None, now, changes)
    record("ticket.update", object_type="ticket", object_id=ticket.number, user=None,
           details={"changes": changes, "system": True})
    db.session.flush()
