"""Read one incoming message into plain values: who, about which ticket, what they wrote, files.

``parse`` never raises anything but ``MessageRefused`` for bad input: a message over the size
limit, with too many or too large attachments, without a sender, or that the e-mail package
cannot read. The refusal carries the reason and whatever the header told (key, sender,
automatic), so the caller can record it, move the message away and, for a person's mail,
answer. Reasons name no file and quote no text: they may be logged.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from email.header import decode_header, make_header
from email.message import EmailMessage, Message
from email.parser import BytesHeaderParser, BytesParser
from email.policy import default
from email.utils import getaddresses

from core.mail.compose import one_line
from core.mail.loops import is_automatic
from core.mail.text import extract_reply, html_to_text, tidy

MB = 1024 * 1024
SUBJECT_TICKET = re.compile(r"\[\s*(PD-\d{6,9})\s*\]", re.IGNORECASE)
THREAD_ID = re.compile(r"<ticket-(PD-\d{6,9})(?:\.[^<>@\s]*)?@([^<>\s]+)>", re.IGNORECASE)
MESSAGE_ID = re.compile(r"<[^<>\s]+>")
UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f/\\]+")


@dataclass(frozen=True)
class InboundLimits:
    """How much one incoming message may hold."""

    max_message_bytes: int = 25 * MB
    max_attachments: int = 50
    max_attachment_bytes: int = 20 * MB
    max_text_chars: int = 100_000


@dataclass(frozen=True)
class Attachment:
    """A file that came with a message: its name, declared content type and bytes."""

    filename: str = field(repr=False)
    content_type: str
    data: bytes = field(repr=False)
    inline: bool = False

    @property
    def size(self) -> int:
        """Size in bytes."""
        return len(self.data)


@dataclass(frozen=True)
class InboundMessage:
    """One incoming message as plain values; what a person wrote stays out of ``repr``."""

    key: str
    message_id: str | None
    sender: str
    sender_name: str
    return_path: str | None
    subject: str = field(repr=False)
    in_reply_to: str | None
    references: tuple[str, ...]
    ticket_number: str | None
    automatic: str | None
    text: str = field(repr=False)
    reply: str = field(repr=False)
    attachments: tuple[Attachment, ...] = field(default=(), repr=False)
    truncated: bool = False


class MessageRefused(ValueError):
    """A message that is not taken: ``reason`` says why; header facts are kept when readable."""

    def __init__(self, reason: str, *, key: str, message_id: str | None = None,
                 sender: str | None = None, automatic: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.key = key
        self.message_id = message_id
        self.sender = sender
        self.automatic = automatic


def megabytes(size: int) -> str:
    """A byte count in megabytes for messages: 25 MB, 0.5 MB."""
    return f"{round(size / MB, 1):g} MB"


def _decode_8bit(data: bytes) -> str:
    """Bytes of unknown encoding: UTF-8 when valid, else Windows-1252, else Latin-1."""
    for charset in ("utf-8", "cp1252"):
        try:
            return data.decode(charset)
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1")


def header_text(message: Message, name: str) -> str:
    """A header decoded (RFC 2047 in any charset, or raw 8-bit) and cleaned to one line."""
    raw = next((value for key, value in message.raw_items() if key.lower() == name.lower()), None)
    if raw is None:
        return ""
    if any("\udc80" <= char <= "\udcff" for char in raw):
        raw = _decode_8bit(raw.encode("ascii", "surrogateescape"))
    try:
        text = str(make_header(decode_header(raw))) if raw.isascii() else _mixed_words(raw)
    except (LookupError, UnicodeError, ValueError):
        text = str(message.get(name, ""))
    return one_line(text)


def _mixed_words(raw: str) -> str:
    """Decode a header holding both raw non-ASCII text and RFC 2047 words (``make_header`` garbles it)."""
    words = []
    for data, charset in decode_header(raw):
        if isinstance(data, str):
            words.append(data)
            continue
        try:  # decode_header gives the unencoded parts back as raw-unicode-escape bytes
            words.append(data.decode(charset or "raw-unicode-escape", "replace"))
        except LookupError:
            words.append(data.decode("latin-1"))
    return " ".join(word.strip() for word in words)


def message_key(raw: bytes, message_id: str | None = None) -> str:
    """What the processed-messages table remembers: the Message-ID, or a digest of the message."""
    return message_id or "sha256:" + hashlib.sha256(raw).hexdigest()


def _first_id(value: str) -> str | None:
    """The first ``<id>`` in a header value."""
    match = MESSAGE_ID.search(value)
    return match.group() if match else None


def _ticket_number(subject: str, ids: list[str], domain: str | None) -> str | None:
    """The ticket a message is about: ``[PD-000123]`` in the subject, or one of our thread ids."""
    match = SUBJECT_TICKET.search(subject)
    if match:
        return match.group(1).upper()
    for value in ids:
        found = THREAD_ID.fullmatch(value)
        if found and (domain is None or found.group(2).lower() == domain.lower()):
            return found.group(1).upper()
    return None


def _address(message: Message, name: str) -> tuple[str, str]:
    """(display name, address) of the first address in a header, lower-cased address."""
    pairs = getaddresses([header_text(message, name)])
    for display, address in pairs:
        if "@" in address:
            return one_line(display), one_line(address).lower()
    return "", ""


def _part_text(part: Message) -> str:
    """A text part decoded with its declared charset, falling back when that is wrong or unknown."""
    payload = part.get_payload(decode=True)
    data = payload if isinstance(payload, bytes) else b""
    charset = part.get_content_charset()
    if charset:
        try:
            return data.decode(charset)
        except (LookupError, UnicodeDecodeError):
            pass
    return _decode_8bit(data)


def _filename(part: Message, number: int) -> str:
    """A safe file name for an attachment: no folders or control characters, at most 200 characters."""
    try:
        name = part.get_filename() or ""
    except (LookupError, UnicodeError, ValueError):
        name = ""
    if any("\udc80" <= char <= "\udcff" for char in name):
        name = _decode_8bit(name.encode("ascii", "surrogateescape"))
    name = UNSAFE_NAME.sub("_", name).strip(" ._")
    return name[-200:] if name else f"attachment-{number}"


def _is_attachment(part: Message) -> bool:
    """Whether a leaf part is a file rather than the message's text (text/plain or text/html)."""
    if part.get_content_disposition() == "attachment" or part.get_filename():
        return True
    return part.get_content_type() not in ("text/plain", "text/html")


def _leaves(message: Message) -> list[Message]:
    """Every leaf part in order; an attached message (message/rfc822) counts as one leaf."""
    if message.get_content_type() == "message/rfc822" or not message.is_multipart():
        return [message]
    parts: list[Message] = []
    payload = message.get_payload()
    for child in payload if isinstance(payload, list) else []:
        if isinstance(child, Message):
            parts.extend(_leaves(child))
    return parts


def _attachment(part: Message, number: int) -> Attachment:
    """An attachment from a leaf part."""
    if part.get_content_type() == "message/rfc822":
        inner = part.get_payload()
        inner_message = inner[0] if isinstance(inner, list) and inner else None
        data = inner_message.as_bytes() if isinstance(inner_message, Message) else b""
        name = _filename(part, number)
        return Attachment(name if name.lower().endswith(".eml") else f"{name}.eml", "message/rfc822", data)
    payload = part.get_payload(decode=True)
    return Attachment(_filename(part, number), part.get_content_type(),
                      payload if isinstance(payload, bytes) else b"",
                      inline=part.get_content_disposition() == "inline")


def _body_and_files(message: Message, limits: InboundLimits,
                    refuse: Callable[[str], MessageRefused]) -> tuple[str, list[Attachment]]:
    """The message's text (plain preferred, else HTML made text) and its attachments."""
    plain: str | None = None
    html: str | None = None
    files: list[Attachment] = []
    for part in _leaves(message):
        if not _is_attachment(part):
            if part.get_content_subtype() == "html":
                html = html if html is not None else _part_text(part)
            else:
                text = _part_text(part)
                plain = text if plain is None else f"{plain}\n\n{text}"
            continue
        if len(files) >= limits.max_attachments:
            raise refuse(f"more than {limits.max_attachments} attachments")
        file = _attachment(part, len(files) + 1)
        if file.size > limits.max_attachment_bytes:
            raise refuse(f"attachment {len(files) + 1} is larger than the "
                         f"{megabytes(limits.max_attachment_bytes)} limit")
        files.append(file)
    if plain is not None and plain.strip():
        return tidy(plain), files
    return (html_to_text(html) if html is not None else tidy(plain or "")), files


def refusal(raw: bytes, reason: str) -> MessageRefused:
    """A refusal for ``raw`` (a whole message or only its header) with what the header tells."""
    try:
        header = BytesHeaderParser(policy=default).parsebytes(raw[:256 * 1024])
        message_id = _first_id(header_text(header, "Message-ID"))
        sender = _address(header, "From")[1] or None
        automatic = is_automatic(header)
    except Exception:  # a header too broken to read still gets its refusal
        message_id = sender = automatic = None
    return MessageRefused(reason, key=message_key(raw, message_id), message_id=message_id,
                          sender=sender, automatic=automatic)


def too_large_reason(limits: InboundLimits) -> str:
    """Why a message over the size limit is refused."""
    return f"the message is larger than the {megabytes(limits.max_message_bytes)} limit"


def refuse_oversized(header: bytes, limits: InboundLimits) -> MessageRefused:
    """The refusal of a message whose listed size is over the limit, from its header alone."""
    return refusal(header, too_large_reason(limits))


def parse(raw: bytes, limits: InboundLimits | None = None, *, domain: str | None = None) -> InboundMessage:
    """Read ``raw``; ``domain`` restricts thread-id matches to ours. Raise MessageRefused on bad input."""
    limits = limits or InboundLimits()
    if not raw.strip():
        raise MessageRefused("the message is empty", key=message_key(raw))
    if len(raw) > limits.max_message_bytes:
        raise refusal(raw, too_large_reason(limits))
    try:
        return _parse(raw, limits, domain)
    except MessageRefused:
        raise
    except Exception as exc:  # the e-mail package raises many kinds on broken input
        raise refusal(raw, f"the message could not be read ({exc.__class__.__name__})") from None


def _parse(raw: bytes, limits: InboundLimits, domain: str | None) -> InboundMessage:
    """``parse`` without the safety net."""
    message = BytesParser(policy=default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    message_id = _first_id(header_text(message, "Message-ID"))
    key = message_key(raw, message_id)
    sender_name, sender = _address(message, "From")
    return_path = _first_id(header_text(message, "Return-Path"))
    return_address = return_path.strip("<>").lower() if return_path else None
    automatic = is_automatic(message)

    def refuse(reason: str) -> MessageRefused:
        return MessageRefused(reason, key=key, message_id=message_id,
                              sender=sender or return_address, automatic=automatic)

    if not sender:
        sender = return_address or ""
    if not sender:
        raise refuse("the message has no sender address")
    subject = header_text(message, "Subject")
    in_reply_to = _first_id(header_text(message, "In-Reply-To"))
    references = tuple(MESSAGE_ID.findall(header_text(message, "References")))
    ticket = _ticket_number(subject, [*([in_reply_to] if in_reply_to else []), *references], domain)
    text, files = _body_and_files(message, limits, refuse)
    truncated = len(text) > limits.max_text_chars
    text = text[: limits.max_text_chars]
    return InboundMessage(
        key=key, message_id=message_id, sender=sender, sender_name=sender_name,
        return_path=return_address, subject=subject, in_reply_to=in_reply_to, references=references,
        ticket_number=ticket, automatic=automatic, text=text, reply=extract_reply(text),
        attachments=tuple(files), truncated=truncated)
