"""Syslog as ATNA senders speak it: RFC 5424 and RFC 3164 headers, RFC 6587 TCP framing.

Pure functions and plain dataclasses: no sockets, no Flask, no database. UDP needs no framing
(RFC 5426: one datagram is one message); TCP and TLS streams go through ``StreamFramer``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from audit.atna.errors import Quarantined, QuarantineReason

MAX_MESSAGE_BYTES = 64 * 1024
BOM = b"\xef\xbb\xbf"
NIL = "-"


class FramingError(ValueError):
    """A TCP stream that breaks RFC 6587 or the size limit; ``frames`` were complete before it."""

    def __init__(self, reason: str, frames: list[bytes], too_large: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.frames = frames
        self.too_large = too_large


@dataclass(frozen=True, slots=True)
class SDElement:
    """One RFC 5424 structured-data element: its SD-ID and its parameters in order."""

    id: str
    params: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class SyslogMessage:
    """A parsed syslog header and its message octets (the BOM removed)."""

    format: str
    facility: int
    severity: int
    version: int | None
    timestamp: datetime | None
    hostname: str | None
    app_name: str | None
    procid: str | None
    msgid: str | None
    structured_data: tuple[SDElement, ...]
    message: bytes
    had_bom: bool


class StreamFramer:
    """Split one TCP connection's bytes into syslog frames (RFC 6587), refusing oversized ones.

    The framing is detected from the connection's first byte: a digit means octet counting
    (``123 <85>1 ...``), ``<`` means the older newline-terminated framing.
    """

    def __init__(self, max_bytes: int = MAX_MESSAGE_BYTES) -> None:
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be at least 1, not {max_bytes!r}")
        self.max_bytes = max_bytes
        self.octet_counting: bool | None = None
        self._buffer = bytearray()
        self._need: int | None = None
        self._max_digits = len(str(max_bytes))
        self._newline_from = 0

    @property
    def pending(self) -> int:
        """Bytes held for a frame that is not complete yet."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes and return the frames they complete."""
        buf = self._buffer
        buf += data
        if self.octet_counting is None:
            start = _skip_separators(buf, 0)
            if start == len(buf):
                buf.clear()
                return []
            first = buf[start]
            if 0x30 <= first <= 0x39:
                self.octet_counting = True
            elif first == 0x3C:
                self.octet_counting = False
            else:
                buf.clear()
                raise FramingError("stream starts with neither an octet count nor '<'", [])
        return self._octet_frames() if self.octet_counting else self._newline_frames()

    def _octet_frames(self) -> list[bytes]:
        """Frames of an octet-counted stream (``MSG-LEN SP SYSLOG-MSG``)."""
        buf, pos = self._buffer, 0
        frames: list[bytes] = []
        end = len(buf)
        while True:
            if self._need is None:
                pos = _skip_separators(buf, pos)
                if pos < end and not 0x31 <= buf[pos] <= 0x39:
                    self._fail("octet count is not a positive number", frames)
                space = buf.find(b" ", pos, pos + self._max_digits + 1)
                if space < 0:
                    if end - pos > self._max_digits:
                        if not bytes(buf[pos:pos + self._max_digits + 1]).isdigit():
                            self._fail("octet count is not a positive number", frames)
                        self._fail(f"octet count is over the {self.max_bytes} byte limit", frames, True)
                    break
                digits = bytes(buf[pos:space])
                if not digits.isdigit():
                    self._fail("octet count is not a positive number", frames)
                if int(digits) > self.max_bytes:
                    self._fail(f"octet count is over the {self.max_bytes} byte limit", frames, True)
                count = int(digits)
                self._need = count
                pos = space + 1
            if end - pos < self._need:
                break
            frames.append(bytes(buf[pos:pos + self._need]))
            pos += self._need
            self._need = None
        del buf[:pos]
        return frames

    def _newline_frames(self) -> list[bytes]:
        """Frames of a newline-terminated stream (older senders); empty lines are skipped."""
        buf, pos = self._buffer, 0
        frames: list[bytes] = []
        while True:
            newline = buf.find(b"\n", max(pos, self._newline_from))
            if newline < 0:
                break
            line = bytes(buf[pos:newline]).rstrip(b"\r")
            if len(line) > self.max_bytes:
                self._fail(f"line is over the {self.max_bytes} byte limit", frames, True)
            if line:
                frames.append(line)
            pos = newline + 1
        del buf[:pos]
        self._newline_from = len(buf)
        if len(buf) > self.max_bytes:
            self._fail(f"line is over the {self.max_bytes} byte limit", frames, True)
        return frames

    def _fail(self, reason: str, frames: list[bytes], too_large: bool = False) -> None:
        """Drop the buffer and raise: the connection cannot be resynchronised."""
        self._buffer.clear()
        self._need = None
        raise FramingError(reason, frames, too_large)


def _skip_separators(buf: bytearray, pos: int) -> int:
    """Index of the first byte at or after ``pos`` that is not a line break or NUL between frames."""
    end = len(buf)
    while pos < end and buf[pos] in (0x0A, 0x0D, 0x00):
        pos += 1
    return pos


_PRI = re.compile(rb"<(\d{1,3})>")
_VERSION = re.compile(rb"([1-9]\d?) ")
_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]\d\d:\d\d)?\Z")
_MONTHS = {name: number for number, name in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), start=1)}
_BSD_HEADER = re.compile(
    rb"([A-Z][a-z]{2}) ([ \d]\d) (\d\d):(\d\d):(\d\d) (?:(\S+) )?")
_BSD_TAG = re.compile(rb"([^\s:\[<]{1,48})(\[[^\]\s]{1,128}\])?: ?")
_SD_ELEMENT = re.compile(
    rb'\[([!#-<>-\\^-~]{1,32})((?: [!#-<>-\\^-~]{1,32}="(?:[^"\\]|\\.)*")*)\]', re.DOTALL)
_SD_PARAM = re.compile(rb' ([!#-<>-\\^-~]{1,32})="((?:[^"\\]|\\.)*)"', re.DOTALL)
_SD_ESCAPE = re.compile(r'\\(["\\\]])')


def parse_syslog(frame: bytes, received_at: datetime | None = None) -> SyslogMessage:
    """Parse one syslog message (RFC 5424, else RFC 3164 best effort); raise Quarantined if neither."""
    pri = _PRI.match(frame)
    if pri is None:
        raise Quarantined(QuarantineReason.NOT_SYSLOG, "PRI: message does not start with <0..191>")
    value = int(pri.group(1))
    if value > 191:
        raise Quarantined(QuarantineReason.NOT_SYSLOG, "PRI: priority above 191")
    facility, severity = divmod(value, 8)
    version = _VERSION.match(frame, pri.end())
    if version is not None:
        return _parse_5424(frame, version.end(), facility, severity, int(version.group(1)))
    return _parse_3164(frame, pri.end(), facility, severity, received_at or datetime.now(UTC))


def _parse_5424(frame: bytes, pos: int, facility: int, severity: int, version: int) -> SyslogMessage:
    """The RFC 5424 header fields after ``<PRI>VERSION SP``."""
    fields: list[str] = []
    for name in ("TIMESTAMP", "HOSTNAME", "APP-NAME", "PROCID", "MSGID"):
        space = frame.find(b" ", pos)
        if space < 0:
            raise Quarantined(QuarantineReason.NOT_SYSLOG, f"{name}: header ends early")
        fields.append(_header_text(frame[pos:space], name))
        pos = space + 1
    timestamp = None if fields[0] == NIL else parse_timestamp(fields[0])
    structured, pos = _parse_structured_data(frame, pos)
    if pos < len(frame):
        if frame[pos] != 0x20:
            raise Quarantined(QuarantineReason.NOT_SYSLOG, "STRUCTURED-DATA: no space before MSG")
        pos += 1
    message = frame[pos:]
    had_bom = message.startswith(BOM)
    return SyslogMessage(
        format="rfc5424", facility=facility, severity=severity, version=version,
        timestamp=timestamp, hostname=_nil(fields[1]), app_name=_nil(fields[2]),
        procid=_nil(fields[3]), msgid=_nil(fields[4]), structured_data=structured,
        message=message[3:] if had_bom else message, had_bom=had_bom)


def _header_text(raw: bytes, name: str) -> str:
    """A header field as text: printable US-ASCII, not empty."""
    if not raw or not raw.isascii() or not raw.decode("ascii").isprintable():
        raise Quarantined(QuarantineReason.NOT_SYSLOG, f"{name}: empty or not printable US-ASCII")
    return raw.decode("ascii")


def _nil(value: str) -> str | None:
    """None for the NILVALUE ``-``."""
    return None if value == NIL else value


def parse_timestamp(text: str) -> datetime:
    """An RFC 5424 TIMESTAMP as an aware UTC datetime (fractions past microseconds are cut)."""
    found = read_datetime(text)
    if found is None or found[1] is None:
        raise Quarantined(QuarantineReason.NOT_SYSLOG, "TIMESTAMP: not an RFC 3339 date-time with offset")
    return found[0]


def read_datetime(text: str) -> tuple[datetime, timedelta | None] | None:
    """An RFC 3339 / xsd:dateTime as (aware UTC, the sender's offset or None when it gave none)."""
    if _TIMESTAMP.match(text) is None:
        return None
    try:
        stamp = datetime.fromisoformat(text)  # Z and any number of fraction digits since 3.11
        if stamp.tzinfo is None:
            return stamp.replace(tzinfo=UTC), None
        return stamp.astimezone(UTC), stamp.utcoffset()
    except (ValueError, OverflowError):
        return None


def _parse_structured_data(frame: bytes, pos: int) -> tuple[tuple[SDElement, ...], int]:
    """STRUCTURED-DATA at ``pos``: the elements and the index just after them."""
    if frame[pos:pos + 1] == b"-":
        return (), pos + 1
    elements: list[SDElement] = []
    while (match := _SD_ELEMENT.match(frame, pos)) is not None:
        params = tuple((name.decode("ascii"), _sd_value(value))
                       for name, value in _SD_PARAM.findall(match.group(2)))
        elements.append(SDElement(match.group(1).decode("ascii"), params))
        pos = match.end()
    if not elements:
        raise Quarantined(QuarantineReason.NOT_SYSLOG, "STRUCTURED-DATA: neither '-' nor [SD-ID ...]")
    return tuple(elements), pos


def _sd_value(raw: bytes) -> str:
    """A PARAM-VALUE as text, its escapes (backslash before '"', '\\' and ']') undone."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Quarantined(QuarantineReason.BAD_ENCODING,
                          "STRUCTURED-DATA: PARAM-VALUE is not UTF-8") from None
    return _SD_ESCAPE.sub(r"\1", text) if "\\" in text else text


def _parse_3164(frame: bytes, pos: int, facility: int, severity: int,
                received_at: datetime) -> SyslogMessage:
    """An RFC 3164 message: ``Mmm dd hh:mm:ss HOST TAG: MSG``, each part optional (best effort)."""
    timestamp = hostname = app_name = procid = None
    header = _BSD_HEADER.match(frame, pos)
    if header is not None and header.group(1).decode() in _MONTHS:
        timestamp = _bsd_timestamp(header, received_at)
        host = header.group(6)
        if host is not None and not host.startswith(b"<"):
            hostname = host.decode("ascii", "replace")
            pos = header.end()
        else:
            pos = header.end(5) + 1
    tag = _BSD_TAG.match(frame, pos)
    if tag is not None and not frame.startswith(b"<", pos):
        app_name = tag.group(1).decode("ascii", "replace")
        procid = tag.group(2)[1:-1].decode("ascii", "replace") if tag.group(2) else None
        pos = tag.end()
    message = frame[pos:]
    had_bom = message.startswith(BOM)
    return SyslogMessage(
        format="rfc3164", facility=facility, severity=severity, version=None, timestamp=timestamp,
        hostname=hostname, app_name=app_name, procid=procid, msgid=None, structured_data=(),
        message=message[3:] if had_bom else message, had_bom=had_bom)


def _bsd_timestamp(header: re.Match[bytes], received_at: datetime) -> datetime | None:
    """An RFC 3164 time (no year, no zone) read as UTC in the year that puts it closest before now."""
    month = _MONTHS[header.group(1).decode()]
    day, hour, minute, second = (int(header.group(n)) for n in (2, 3, 4, 5))
    now = received_at.astimezone(UTC)
    for year in (now.year, now.year - 1):
        try:
            stamp = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
        except ValueError:
            continue
        if stamp <= now + timedelta(days=1):
            return stamp
    return None
