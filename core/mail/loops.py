"""Recognise messages sent by machines (RFC 3834): file them as nothing and never answer them.

Answering an out-of-office reply, a bounce or a mailing list starts a mail loop. A message is
automatic when it has ``Auto-Submitted`` other than ``no``; ``Precedence`` bulk, junk, list or
auto_reply; ``X-Autoreply``, ``X-Autorespond`` or ``X-Auto-Response-Suppress`` (which
Exchange puts on its automatic messages, and PACS Desk on its own); ``List-Id``; an empty
return path (``<>``, a bounce); a ``MAILER-DAEMON`` or ``postmaster`` sender; or the
``multipart/report`` type of delivery and read reports.
"""

from __future__ import annotations

from email.message import Message
from email.utils import getaddresses

MACHINE_SENDERS = frozenset({"mailer-daemon", "postmaster"})
BULK_PRECEDENCE = frozenset({"bulk", "junk", "list", "auto_reply"})
PRESENCE_HEADERS = ("X-Autoreply", "X-Autorespond", "X-Auto-Response-Suppress", "List-Id")


def _value(message: Message, name: str) -> str | None:
    """A header's value, lower-cased and stripped, or None when absent."""
    value = message.get(name)
    if value is None:
        return None
    return " ".join("".join(c if c.isprintable() else " " for c in str(value)).split()).lower()


def is_automatic(message: Message) -> str | None:
    """Why ``message`` was sent by a machine and must not be answered, or None for a person's mail."""
    auto = _value(message, "Auto-Submitted")
    if auto is not None and auto.split(";")[0].strip() != "no":
        return f"Auto-Submitted: {auto.split(';')[0].strip()[:40]}"
    precedence = _value(message, "Precedence")
    if precedence in BULK_PRECEDENCE:
        return f"Precedence: {precedence}"
    for name in PRESENCE_HEADERS:
        if message.get(name) is not None:
            return f"{name} header"
    return_path = _value(message, "Return-Path")
    if return_path is not None and return_path.strip("<> ") == "":
        return "empty return path (a bounce)"
    for name in ("Return-Path", "From", "Sender"):
        for _, address in getaddresses([str(v) for v in message.get_all(name, [])]):
            if address.partition("@")[0].lower() in MACHINE_SENDERS:
                return f"sent by {address.partition('@')[0].upper()}"
    if message.get_content_type() == "multipart/report":
        return "delivery or read report (multipart/report)"
    return None
