"""Linked tickets (duplicate of, related to, part of an incident), merging, and outage incidents."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from flask import current_app
from sqlalchemy import or_, select, update

from audit import record
from core.auth.models import User
from core.auth.permissions import Permission, has_permission
from core.extensions import db
from helpdesk.models import (
    LinkKind,
    Ticket,
    TicketAttachment,
    TicketComment,
    TicketFollower,
    TicketLink,
    TicketStatus,
    format_number,
    parse_number,
)
from helpdesk.services import TicketError, add_reply, add_system_reply, open_system_ticket, update_ticket

# Audit actions recorded here (registered by the package's init_app).
AUDIT_ACTIONS = {
    "ticket.link": "Tickets linked",
    "ticket.unlink": "Ticket link removed",
    "ticket.merge": "Ticket merged into another",
}


@dataclass(frozen=True)
class LinkRow:
    """One link as the ticket page shows it."""

    link_id: int
    label: str
    number: str
    title: str
    status_label: str


def _other(number: str, ticket: Ticket) -> Ticket:
    """The ticket called ``number`` (not ``ticket`` itself), or a TicketError on the number field."""
    other_id = parse_number(number or "")
    if other_id is None and (number or "").strip().isdigit():
        other_id = int(number.strip())
    other = db.session.get(Ticket, other_id) if other_id is not None else None
    if other is None:
        raise TicketError(f"Ticket: no ticket is numbered {(number or '').strip()[:20]!r}.", "other")
    if other.id == ticket.id:
        raise TicketError("Ticket: a ticket cannot be linked to itself.", "other")
    return other


def _require_staff(actor: User) -> None:
    """Only the PACS team links and merges."""
    if not has_permission(actor, Permission.TICKET_WORK):
        raise TicketError("Only the PACS team links and merges tickets.", "kind")


def _add_link(ticket: Ticket, other: Ticket, kind: LinkKind, actor: User | None) -> TicketLink:
    """Add the link (refused when the pair is already linked either way); audited as ticket.link."""
    existing = db.session.execute(select(TicketLink).where(or_(
        (TicketLink.ticket_id == ticket.id) & (TicketLink.other_id == other.id),
        (TicketLink.ticket_id == other.id) & (TicketLink.other_id == ticket.id)))).scalar_one_or_none()
    if existing is not None:
        raise TicketError(f"Ticket: {ticket.number} and {other.number} are already linked.", "other")
    link = TicketLink(ticket_id=ticket.id, other_id=other.id, kind=kind,
                      created_by_id=actor.id if actor else None)
    db.session.add(link)
    record("ticket.link", object_type="ticket", object_id=ticket.number, user=actor,
           covers=[other.number], details={"kind": kind, "other": other.number})
    return link


def link_tickets(ticket: Ticket, number: str, kind: str, actor: User) -> TicketLink:
    """Link ``ticket`` to the ticket numbered ``number`` as ``kind`` (flushes)."""
    _require_staff(actor)
    try:
        link_kind = LinkKind(kind)
    except ValueError:
        raise TicketError("Link: choose duplicate of, related to or part of incident.", "kind") from None
    link = _add_link(ticket, _other(number, ticket), link_kind, actor)
    db.session.flush()
    return link


def unlink(ticket: Ticket, link_id: int, actor: User) -> None:
    """Remove a link of ``ticket`` (either direction); audited as ticket.unlink."""
    _require_staff(actor)
    link = db.session.get(TicketLink, link_id)
    if link is None or ticket.id not in (link.ticket_id, link.other_id):
        raise TicketError("Link: this link no longer exists.", "kind")
    numbers = [format_number(link.ticket_id), format_number(link.other_id)]
    db.session.delete(link)
    record("ticket.unlink", object_type="ticket", object_id=numbers[0], user=actor, covers=numbers[1:],
           details={"kind": link.kind, "other": numbers[1]})
    db.session.flush()


def links_of(ticket: Ticket) -> list[LinkRow]:
    """The ticket's links both ways, for its page."""
    rows = db.session.execute(select(TicketLink).where(
        or_(TicketLink.ticket_id == ticket.id, TicketLink.other_id == ticket.id))
        .order_by(TicketLink.id)).scalars().all()
    others = {t.id: t for t in db.session.execute(select(Ticket).where(Ticket.id.in_(
        [r.other_id if r.ticket_id == ticket.id else r.ticket_id for r in rows]))).scalars()}
    result = []
    for row in rows:
        outgoing = row.ticket_id == ticket.id
        other = others[row.other_id if outgoing else row.ticket_id]
        label = row.kind.label if outgoing else row.kind.inverse_label
        result.append(LinkRow(row.id, label, other.number, other.title, other.status_enum.label))
    return result


def merge_into(source: Ticket, number: str, actor: User) -> Ticket:
    """Merge ``source`` into the ticket numbered ``number``; returns the surviving ticket (flushes).

    Replies, attachments and followers move to the survivor; the source's requester follows it;
    the source is closed with a reply pointing to the survivor and a "duplicate of" link.
    """
    _require_staff(actor)
    target = _other(number, source)
    for ticket in (source, target):
        if ticket.status == TicketStatus.CLOSED:
            raise TicketError(f"Ticket: {ticket.number} is closed and cannot be merged.", "other")
    moved_comments = int(getattr(db.session.execute(
        update(TicketComment).where(TicketComment.ticket_id == source.id).values(ticket_id=target.id)),
        "rowcount", 0) or 0)
    moved_files = int(getattr(db.session.execute(
        update(TicketAttachment).where(TicketAttachment.ticket_id == source.id).values(ticket_id=target.id)),
        "rowcount", 0) or 0)
    followers = {f.user_id: f for f in db.session.execute(
        select(TicketFollower).where(TicketFollower.ticket_id == source.id)).scalars()}
    if source.requester_id is not None:
        followers.setdefault(source.requester_id, TicketFollower(ticket_id=source.id,
                                                                user_id=source.requester_id))
    already = set(db.session.execute(select(TicketFollower.user_id).where(
        TicketFollower.ticket_id == target.id)).scalars())
    for user_id, follower in followers.items():
        if user_id in already or user_id == target.requester_id:
            if follower in db.session:
                db.session.delete(follower)
        elif follower in db.session:
            follower.ticket_id = target.id
        else:
            db.session.add(TicketFollower(ticket_id=target.id, user_id=user_id))
    record("ticket.merge", object_type="ticket", object_id=target.number, user=actor,
           covers=[source.number],
           details={"merged": source.number, "replies": moved_comments, "attachments": moved_files,
                    "followers": sorted(followers)})
    _add_link(source, target, LinkKind.DUPLICATE, actor)
    add_reply(target, actor, f"{source.number} ({source.title}) was merged into this ticket: its "
              f"replies and attachments are here now.", internal=True)
    add_reply(source, actor, f"Merged into {target.number}: the work continues there.")
    update_ticket(source, actor, status=TicketStatus.CLOSED)
    db.session.flush()
    return target


def open_outage_incident(ticket_ids: Sequence[int]) -> Ticket | None:
    """One incident above the node tickets one sweep opened, when more than the threshold did.

    Each node's ticket becomes a child of the incident (audited as ticket.link); returns the
    incident, or None below the threshold. Only flushes.
    """
    threshold = current_app.config["PACSDESK_OUTAGE_GROUP_THRESHOLD"]
    ids = sorted(set(ticket_ids))
    if len(ids) <= threshold:
        return None
    children = list(db.session.execute(select(Ticket).where(Ticket.id.in_(ids))
                                       .order_by(Ticket.id)).scalars())
    lines = "\n".join(f"- {t.number}: {t.title}" for t in children)
    incident = open_system_ticket(
        f"outage:{children[0].id}", f"Outage: {len(children)} DICOM nodes down at once",
        f"{len(children)} DICOM nodes stopped answering C-ECHO in the same sweep, which points to "
        f"a shared cause (network, switch, power, DNS). Each node's ticket is a child of this one and "
        f"is resolved by itself when its node answers again.\n\n{lines}",
        category_code="dicom_node_down", priority="P1")
    for child in children:
        _add_link(child, incident, LinkKind.CHILD, None)
    add_system_reply(incident, f"Grouped {len(children)} node tickets under this incident.")
    db.session.flush()
    return incident
