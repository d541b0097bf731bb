"""Mail into the help desk: new messages file tickets, replies answer them, through ``helpdesk.services``.

The periodic ``mail.fetch`` job reads ``PACSDESK_MAIL_IMAP_URL``. For each message:

- a machine's message (``loops.is_automatic``: out-of-office, bounce, list...) is filed as
  nothing and never answered, whoever sent it;
- a sender that matches no active account's e-mail address (case-insensitive) gets nothing
  back; the message is held for an administrator to assign to a person (filed as that person)
  or discard;
- a known person's new message files a ticket (subject → title, the words they wrote →
  description, attachments through the web form's checks and limits);
- a known person's reply (``[PD-000123]`` in the subject, or our thread's Message-IDs in
  In-Reply-To/References) adds a public reply to that ticket, only when they filed it;
- anything refused (too large, a file type not accepted, a ticket that is not theirs) is
  filed as nothing and the person is told why (never what they wrote) in the app and by e-mail.

**Who sent it cannot be proven.** Without DKIM/SPF checking (the mail server's job, not ours)
the From: header can be forged. So a message acts only as its From: address's owner, and only
in ways a forgery cannot make worse than a prank: it files a ticket, or it adds a public reply
to a ticket that person filed (which, like a reply on the web, moves a ticket waiting on them
back to open); it never closes, resolves, reassigns or reprioritises anything, and the PACS
team's own replies are accepted only on the web. Words in a message are never commands.

**Once each.** The message's key (its Message-ID, or a digest) is remembered in
``mail_inbound`` in the same transaction as the filing; a message read again after a crash
between the commit and the move to ``PACSDESK_MAIL_PROCESSED_FOLDER`` is only moved.
Every message read is an audit event (sender, outcome, ticket; never the text).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from flask import current_app
from sqlalchemy import func, select

from audit import record
from core.auth.models import User
from core.database import outside_transaction
from core.extensions import db
from core.jobs.registry import JobContext
from core.jobs.worker import Fail, Retry
from core.mail.compose import Notice
from core.mail.imap import ImapError, Mailbox, MessageGone
from core.mail.inbound import InboundLimits, InboundMessage, MessageRefused, parse, refuse_oversized
from core.notifications import notify
from core.notifications.models import InboundMail, InboundOutcome
from core.timeutil import utcnow
from helpdesk import access, services
from helpdesk.attachments import ALLOWED_DESCRIPTION, MAX_FILES, Upload
from helpdesk.models import Category, Ticket, parse_number
from helpdesk.notifications import MAIL_REFUSED

FETCH_JOB = "mail.fetch"
MB = 1024 * 1024
MAX_MESSAGE_MB = 25
NO_SUBJECT = "E-mail without a subject"

# Audit actions recorded here (registered by the package's init_app).
AUDIT_ACTIONS = {
    "mail.received": "E-mail read from the help desk's mailbox",
    "mail.held_assigned": "Held e-mail filed for a person by an administrator",
    "mail.held_discarded": "Held e-mail discarded by an administrator",
}


class HeldMailError(ValueError):
    """A held message could not be assigned or discarded; the message says why."""


@dataclass(frozen=True)
class Handled:
    """What became of one message."""

    outcome: InboundOutcome
    ticket: str | None = None
    reason: str = ""
    duplicate: bool = False


def limits() -> InboundLimits:
    """The web form's limits: PACSDESK_MAX_UPLOAD_MB per file, at most MAX_FILES files."""
    per_file = current_app.config["PACSDESK_MAX_UPLOAD_MB"] * MB
    return InboundLimits(max_message_bytes=MAX_MESSAGE_MB * MB, max_attachments=MAX_FILES,
                         max_attachment_bytes=per_file)


def _domain() -> str | None:
    """Our Message-ID domain, so only our own thread ids name a ticket."""
    identity = current_app.config["PACSDESK_MAIL"].identity
    return identity.domain if identity else None


def _sender_account(address: str) -> tuple[User | None, str]:
    """The one active account using ``address``, or None and why."""
    users = list(db.session.execute(select(User).where(
        func.lower(User.email) == address.lower(), User.is_disabled.is_(False))).scalars())
    if len(users) > 1:
        return None, "several accounts use this address"
    if not users:
        return None, "no account uses this address"
    return users[0], ""


def _remember(key: str, message_id: str | None, sender: str, outcome: InboundOutcome, *, reason: str = "",
              ticket: str | None = None, user: User | None = None, subject: str = "",
              raw: bytes | None = None) -> None:
    """Keep the message's key and outcome, and audit it (never its text); flushes."""
    db.session.add(InboundMail(key=key[:250], message_id=(message_id or "")[:250] or None,
                               sender=sender[:254], subject=subject[:300], received_at=utcnow(),
                               outcome=outcome, reason=reason[:300], ticket=ticket,
                               user_id=user.id if user else None, raw=raw))
    db.session.flush()
    record("mail.received", object_type="ticket" if ticket else "mail", object_id=ticket or message_id,
           user=user, client_address=None, outcome="success" if outcome in (
               InboundOutcome.FILED, InboundOutcome.REPLIED) else "failure",
           details={"sender": sender, "outcome": outcome.value, "reason": reason[:300] or None,
                    "message_id": message_id})


def _tell(user: User, reason: str) -> None:
    """Tell a known sender why their message was not filed (never what it said)."""
    notify(MAIL_REFUSED, [user], Notice(
        subject="Your e-mail to the help desk was not filed",
        paragraphs=(f"An e-mail from you was not filed: {reason}.",
                    "Nothing was added to any ticket. File or answer the ticket in PACS Desk instead."),
        link_path="/my/tickets", link_label="Open your tickets"))


def _refusal_text(error: services.TicketError) -> str:
    """A refusal the sender may read in an e-mail: attachment names are left out."""
    if error.field == "attachments":
        return (f"an attachment is not accepted (allowed: {ALLOWED_DESCRIPTION}, at most "
                f"{current_app.config['PACSDESK_MAX_UPLOAD_MB']} MB each, up to {MAX_FILES} files)")
    return str(error).rstrip(".")


def _default_category() -> int | None:
    """The "Other" category, or the first active one."""
    categories = list(db.session.execute(select(Category).where(Category.is_active.is_(True))
                                         .order_by(Category.sort_order, Category.id)).scalars())
    chosen = next((c for c in categories if c.code == "other"), categories[0] if categories else None)
    return chosen.id if chosen else None


def _file(message: InboundMessage, user: User) -> tuple[InboundOutcome, Ticket]:
    """File ``message`` as ``user``: a reply to their ticket, or a new ticket (flushes; TicketError)."""
    uploads = [Upload(a.filename, a.data) for a in message.attachments]
    words = message.reply.strip()
    if message.ticket_number:
        ticket_id = parse_number(message.ticket_number)
        ticket = db.session.get(Ticket, ticket_id) if ticket_id is not None else None
        if ticket is None or ticket.requester_id != user.id or not access.can_see(user, ticket):
            raise services.TicketError(
                f"e-mail replies to ticket {message.ticket_number} are accepted only from the person "
                "who filed it", "body")
        if not words and not uploads:
            raise services.TicketError("the reply is empty once quoted text is removed", "body")
        services.add_reply(ticket, user, (words or "(files sent by e-mail)")[:services.REPLY_MAX],
                           internal=False, uploads=uploads)
        return InboundOutcome.REPLIED, ticket
    text = words or message.text.strip()
    if not text and not uploads:
        raise services.TicketError("the message has no text and no attachment", "description")
    new = services.NewTicket(title=(message.subject.strip() or NO_SUBJECT)[:services.TITLE_MAX],
                             description=(text or "(files sent by e-mail)")[:services.DESCRIPTION_MAX],
                             category_id=_default_category(), impact="one", urgency="today")
    return InboundOutcome.FILED, services.create_ticket(new, user, uploads)


def _refused(refused: MessageRefused) -> Handled:
    """A message ``parse`` refused: told to a known person, nothing back to anyone else (commits)."""
    sender = refused.sender or ""
    if refused.automatic:
        _remember(refused.key, refused.message_id, sender, InboundOutcome.AUTOMATIC, reason=refused.automatic)
        db.session.commit()
        return Handled(InboundOutcome.AUTOMATIC, reason=refused.automatic)
    user, _why = _sender_account(sender) if sender else (None, "")
    _remember(refused.key, refused.message_id, sender, InboundOutcome.REFUSED, reason=refused.reason,
              user=user)
    if user is not None:
        _tell(user, refused.reason)
    db.session.commit()
    return Handled(InboundOutcome.REFUSED, reason=refused.reason)


def _seen(key: str) -> InboundMail | None:
    """The record of a message already handled."""
    return db.session.execute(select(InboundMail).where(InboundMail.key == key[:250])).scalar_one_or_none()


def process(raw: bytes, refused: MessageRefused | None = None) -> Handled:
    """Handle one message (or the refusal of one too large to fetch) exactly once; commits."""
    try:
        if refused is not None:
            raise refused
        message = parse(raw, limits(), domain=_domain())
    except MessageRefused as refusal:
        earlier = _seen(refusal.key)
        return (Handled(earlier.outcome, earlier.ticket, earlier.reason, duplicate=True) if earlier
                else _refused(refusal))
    earlier = _seen(message.key)
    if earlier is not None:
        return Handled(earlier.outcome, earlier.ticket, earlier.reason, duplicate=True)
    if message.automatic:
        _remember(message.key, message.message_id, message.sender, InboundOutcome.AUTOMATIC,
                  reason=message.automatic)
        db.session.commit()
        return Handled(InboundOutcome.AUTOMATIC, reason=message.automatic)
    user, why = _sender_account(message.sender)
    if user is None:
        _remember(message.key, message.message_id, message.sender, InboundOutcome.HELD, reason=why,
                  subject=message.subject, raw=raw)
        db.session.commit()
        return Handled(InboundOutcome.HELD, reason=why)
    return _file_or_refuse(message, user, key=message.key)


def _file_or_refuse(message: InboundMessage, user: User, *, key: str,
                    held: InboundMail | None = None, admin: User | None = None) -> Handled:
    """File ``message`` as ``user`` and remember it in one transaction; on refusal nothing is filed."""
    try:
        outcome, ticket = _file(message, user)
        if held is None:
            _remember(key, message.message_id, message.sender, outcome, ticket=ticket.number, user=user)
        else:
            held.outcome, held.ticket, held.user_id, held.raw = outcome, ticket.number, user.id, None
            held.handled_by_id = admin.id if admin else None
            record("mail.held_assigned", object_type="ticket", object_id=ticket.number, user=admin,
                   details={"sender": held.sender, "filed_as": user.username, "inbound_id": held.id})
        db.session.commit()
        return Handled(outcome, ticket.number)
    except services.TicketError as error:
        db.session.rollback()
        reason = _refusal_text(error)
        if held is not None:
            raise HeldMailError(f"The message could not be filed as {user.username}: {reason}.") from None
        _remember(key, message.message_id, message.sender, InboundOutcome.REFUSED, reason=reason, user=user,
                  ticket=message.ticket_number)
        _tell(user, reason)
        db.session.commit()
        return Handled(InboundOutcome.REFUSED, message.ticket_number, reason)


# ---------------------------------------------------------------- held messages


def held_messages() -> list[InboundMail]:
    """Messages from unknown senders waiting for an administrator, oldest first."""
    return list(db.session.execute(select(InboundMail).where(InboundMail.outcome == InboundOutcome.HELD)
                                   .order_by(InboundMail.received_at, InboundMail.id)).scalars())


def _held(inbound_id: int) -> InboundMail:
    """A held message by id, or HeldMailError."""
    held = db.session.get(InboundMail, inbound_id)
    if held is None or held.outcome != InboundOutcome.HELD or held.raw is None:
        raise HeldMailError("That message is no longer waiting: someone assigned or discarded it.")
    return held


def assign_held(inbound_id: int, username: str, admin: User) -> Handled:
    """File a held message as the active account ``username`` (commits; HeldMailError on refusal)."""
    held = _held(inbound_id)
    user = db.session.execute(select(User).where(
        User.username == username.strip().lower(), User.is_disabled.is_(False))).scalar_one_or_none()
    if user is None:
        raise HeldMailError(f"No active account is called {username.strip()[:64]!r}.")
    try:
        message = parse(held.raw or b"", limits(), domain=_domain())
    except MessageRefused as refused:
        raise HeldMailError(f"The message cannot be filed: {refused.reason}.") from None
    return _file_or_refuse(message, user, key=held.key, held=held, admin=admin)


def discard_held(inbound_id: int, admin: User) -> None:
    """Discard a held message: its content is deleted, the record of it stays (audited; flushes)."""
    held = _held(inbound_id)
    held.outcome, held.raw, held.handled_by_id = InboundOutcome.DISCARDED, None, admin.id
    db.session.flush()
    record("mail.held_discarded", object_type="mail", object_id=held.message_id or held.id, user=admin,
           details={"sender": held.sender, "inbound_id": held.id})


# ---------------------------------------------------------------- the job


def fetch_mail(settings: Any) -> dict[str, Any]:
    """Read the mailbox once: handle each waiting message, then move it to the processed folder."""
    bounds = limits()
    counts: Counter[str] = Counter()
    with outside_transaction():
        box = Mailbox(settings)
    with box:
        with outside_transaction():
            entries = box.pending()
        for entry in entries:
            try:
                with outside_transaction():
                    too_large = entry.size > bounds.max_message_bytes
                    raw = box.fetch_header(entry.uid) if too_large else box.fetch(entry.uid)
            except MessageGone:
                continue  # another reader took it
            handled = process(raw, refuse_oversized(raw, bounds) if too_large else None)
            counts["already handled" if handled.duplicate else handled.outcome.value] += 1
            with outside_transaction():
                box.move_to_processed(entry.uid)
    return dict(counts)


def poll_interval(app: Any) -> float:
    """Seconds between two readings of the mailbox (PACSDESK_MAIL_POLL_SECONDS)."""
    return float(app.config["PACSDESK_MAIL_POLL_SECONDS"])


def fetch_job(ctx: JobContext) -> dict[str, Any]:
    """The periodic ``mail.fetch`` job (commits per message); IMAP trouble is retried or shown."""
    settings = current_app.config["PACSDESK_MAIL"].imap
    if settings is None:
        return {"skipped": "no mailbox is configured (PACSDESK_MAIL_IMAP_URL)"}
    try:
        return fetch_mail(settings)
    except ImapError as error:
        db.session.rollback()
        if error.temporary:
            raise Retry(str(error)) from None
        raise Fail(str(error)) from None
