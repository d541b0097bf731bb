"""Build outgoing messages: plain text and HTML, threaded per ticket, marked as automatic.

Every message about a ticket carries ``In-Reply-To`` and ``References`` pointing at the
ticket's thread root ``<ticket-PD-000123@domain>`` and ``[PD-000123]`` in its subject, so mail
clients file all of them in one conversation and replies find their ticket again. Each
message has its own Message-ID (``<ticket-PD-000123.RANDOM@domain>``), which also names the
ticket, for clients that keep only ``In-Reply-To``. The outbox should store the Message-ID it
was given so that a retried delivery sends the same message.

No message carries patient identifiers or ticket text: titles go through ``phi.safe_title``
and ``compose`` refuses text in which ``phi.text_problem`` finds an identifier.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr
from html import escape

from core.mail.phi import GENERIC_TITLE, safe_title, text_problem
from core.mail.settings import Identity

TICKET_TAG = re.compile(r"\[(PD-\d{6,9})\]", re.IGNORECASE)
TICKET_NUMBER = re.compile(r"^PD-\d{6,9}$")
CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
MESSAGE_ID = re.compile(r"^<[!-;=?-~]+@[!-;=?-~]+>$")


class UnsafeMessage(ValueError):
    """A message was not built: a part looks like it carries a patient identifier or is invalid."""


@dataclass(frozen=True)
class Notice:
    """What one message says: written by PACS Desk, never a ticket's description or replies."""

    subject: str
    paragraphs: tuple[str, ...]
    link_path: str | None = None
    link_label: str = "Open in PACS Desk"
    ticket: str | None = None
    reason: str = ""


def one_line(value: str) -> str:
    """A header-safe value: control characters (CR, LF, tab...) become spaces, runs collapse."""
    return " ".join(CONTROL.sub(" ", value).split())


def thread_root(ticket: str, domain: str) -> str:
    """The stable Message-ID every message about ``ticket`` refers to."""
    return f"<ticket-{ticket.upper()}@{domain}>"


def new_message_id(domain: str, ticket: str | None = None) -> str:
    """A fresh Message-ID on ``domain``, naming the ticket when there is one."""
    token = f"{int(datetime.now(UTC).timestamp())}.{secrets.token_hex(8)}"
    prefix = f"ticket-{ticket.upper()}" if ticket else "pacsdesk"
    return f"<{prefix}.{token}@{domain}>"


def check_address(value: str, field: str = "recipient") -> str:
    """A single valid address (``user@domain``) or UnsafeMessage naming ``field``."""
    if CONTROL.search(value):
        raise UnsafeMessage(f"{field}: an address cannot contain control characters")
    if not value.isascii():
        raise UnsafeMessage(f"{field}: only addresses in ASCII characters are supported")
    try:
        address = Address(addr_spec=value.strip())
    except (HeaderParseError, ValueError, IndexError):
        raise UnsafeMessage(f"{field}: not an e-mail address") from None
    if not address.username or not address.domain:
        raise UnsafeMessage(f"{field}: not an e-mail address")
    return address.addr_spec


def _check_text(field: str, text: str) -> None:
    """Refuse ``text`` when it looks like it carries a patient identifier."""
    problem = text_problem(text)
    if problem:
        raise UnsafeMessage(f"{field} looks like it carries a patient identifier ({problem}); "
                            "the message was not built")


def _link(identity: Identity, notice: Notice) -> str | None:
    """The absolute link of the notice, or None."""
    if not notice.link_path:
        return None
    if not notice.link_path.startswith("/") or CONTROL.search(notice.link_path):
        raise UnsafeMessage("link path: must start with / and hold no control characters")
    return identity.base_url + notice.link_path


def _text_body(identity: Identity, notice: Notice, link: str | None) -> str:
    """The plain-text part."""
    lines: list[str] = []
    for paragraph in notice.paragraphs:
        lines += [paragraph, ""]
    if link:
        lines += [f"{notice.link_label}: {link}", ""]
    lines += ["-- ", f"{one_line(identity.display_name)} · PACS Desk"]
    if notice.reason:
        lines.append(notice.reason)
    lines.append("This message was sent automatically.")
    return "\n".join(lines) + "\n"


def _html_body(identity: Identity, notice: Notice, link: str | None) -> str:
    """The HTML part: the same words, escaped."""
    parts = ['<!DOCTYPE html>\n<html><body style="font-family: sans-serif; line-height: 1.4">']
    parts += [f"<p>{escape(paragraph)}</p>" for paragraph in notice.paragraphs]
    if link:
        parts.append(f'<p><a href="{escape(link, quote=True)}">{escape(notice.link_label)}</a></p>')
    footer = [f"{escape(one_line(identity.display_name))} · PACS Desk"]
    if notice.reason:
        footer.append(escape(notice.reason))
    footer.append("This message was sent automatically.")
    parts.append('<hr><p style="color: #555; font-size: small">' + "<br>".join(footer) + "</p>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def check_notice(identity: Identity, notice: Notice) -> str:
    """The subject ``notice`` is sent with; UnsafeMessage naming the bad part, without building a message."""
    ticket = notice.ticket.upper() if notice.ticket else None
    if ticket and not TICKET_NUMBER.match(ticket):
        raise UnsafeMessage("ticket: must be a ticket number such as PD-000123")
    subject = one_line(notice.subject)
    if ticket and not TICKET_TAG.search(subject):
        subject = f"[{ticket}] {subject}"
    _check_text("subject", subject)
    for index, paragraph in enumerate(notice.paragraphs, start=1):
        _check_text(f"paragraph {index}", paragraph)
    _check_text("link label", notice.link_label)
    _check_text("reason", notice.reason)
    _link(identity, notice)
    return subject


def compose(identity: Identity, to: str | Sequence[str], notice: Notice, *,
            message_id: str | None = None, reply_to: str | None = None,
            now: datetime | None = None) -> EmailMessage:
    """Build the message for ``notice`` to ``to``; raise UnsafeMessage naming the bad part."""
    recipients = [to] if isinstance(to, str) else list(to)
    if not recipients:
        raise UnsafeMessage("recipient: at least one address is needed")
    addresses = [check_address(value) for value in recipients]
    ticket = notice.ticket.upper() if notice.ticket else None
    subject = check_notice(identity, notice)
    link = _link(identity, notice)
    if message_id and not MESSAGE_ID.match(message_id):
        raise UnsafeMessage("message id: must look like <token@domain>")

    message = EmailMessage(policy=SMTP)
    message["From"] = formataddr((one_line(identity.display_name), identity.address))
    message["To"] = ", ".join(addresses)
    if reply_to:
        message["Reply-To"] = check_address(reply_to, "reply-to")
    message["Subject"] = subject
    message["Date"] = format_datetime(now or datetime.now(UTC))
    message["Message-ID"] = message_id or new_message_id(identity.domain, ticket)
    if ticket:
        root = thread_root(ticket, identity.domain)
        message["In-Reply-To"] = root
        message["References"] = root
    message["Auto-Submitted"] = "auto-generated"
    message["X-Auto-Response-Suppress"] = "All"
    message.set_content(_text_body(identity, notice, link))
    message.add_alternative(_html_body(identity, notice, link), subtype="html")
    return message


def ticket_notice(number: str, title: str, event: str, *, identifiers: Iterable[str] = (),
                  details: Sequence[str] = (), reason: str = "") -> Notice:
    """A notice that ``event`` happened on a ticket, naming it by number and its title made safe."""
    shown = safe_title(title, identifiers)
    event = one_line(event)
    named = shown != GENERIC_TITLE
    first = f"{event}: ticket {number.upper()}, “{shown}”." if named else f"{event}: ticket {number.upper()}."
    paragraphs = (first, *details,
                  "For patient privacy this message holds no ticket text. Read the ticket and "
                  "answer it in PACS Desk.")
    return Notice(subject=f"{event}: {shown}" if named else event, paragraphs=paragraphs,
                  link_path=f"/tickets/{number.upper()}", link_label="Open the ticket",
                  ticket=number, reason=reason)


def mail_test_notice() -> Notice:
    """The message sent by ``pacsdesk mail test``."""
    return Notice(subject="Test message",
                  paragraphs=("This is a test message from PACS Desk. E-mail delivery works.",),
                  link_path="/", reason="An administrator asked for this test message.")
