"""audit.atna.syslog: RFC 5424 / RFC 3164 headers and RFC 6587 framing, refusals included."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from audit.atna.errors import Quarantined, QuarantineReason
from audit.atna.syslog import (
    FramingError,
    SDElement,
    StreamFramer,
    parse_syslog,
    read_datetime,
)

XML = b"<AuditMessage/>"


def octet(frame: bytes) -> bytes:
    """A frame with its RFC 6587 octet count."""
    return b"%d %s" % (len(frame), frame)


def test_rfc5424_header_fields_structured_data_and_bom_are_read():
    frame = (b'<85>1 2025-03-14T10:31:07.123456789+02:00 pacs.hospital.test ARCHIVE1 4711 IHE+RFC-3881 '
             b'[origin ip="10.0.0.1" software="arc \\"light\\" \\] \\\\ \\x"][meta sequenceId="7"] '
             b"\xef\xbb\xbf" + XML)
    message = parse_syslog(frame)
    assert (message.format, message.version) == ("rfc5424", 1)
    assert (message.facility, message.severity) == (10, 5)
    assert message.timestamp == datetime(2025, 3, 14, 8, 31, 7, 123456, tzinfo=UTC)
    assert (message.hostname, message.app_name, message.procid, message.msgid) == (
        "pacs.hospital.test", "ARCHIVE1", "4711", "IHE+RFC-3881")
    assert message.structured_data == (
        SDElement("origin", (("ip", "10.0.0.1"), ("software", 'arc "light" ] \\ \\x'))),
        SDElement("meta", (("sequenceId", "7"),)))
    assert message.had_bom is True
    assert message.message == XML


def test_rfc5424_nil_values_and_missing_message():
    message = parse_syslog(b"<14>1 - - - - - -")
    assert message.timestamp is None
    assert (message.hostname, message.app_name, message.procid, message.msgid) == (None,) * 4
    assert message.structured_data == ()
    assert message.message == b""


def test_utf8_structured_data_value_is_decoded():
    message = parse_syslog('<14>1 - h a - - [x@1 who="Zoë"] '.encode() + XML)
    assert message.structured_data[0].params == (("who", "Zoë"),)
    assert message.message == XML


@pytest.mark.parametrize(("frame", "field"), [
    (b"hello", "PRI"),
    (b"<192>1 - - - - - -", "PRI"),
    (b"<14>1 2025-03-14T10:31:07 h a - - -", "TIMESTAMP"),
    (b"<14>1 2025-13-14T10:31:07Z h a - - -", "TIMESTAMP"),
    (b"<14>1 - h a ", "PROCID"),
    (b"<14>1 - h a - - [unclosed x=\"1\" ", "STRUCTURED-DATA"),
    (b"<14>1 - h a - - nosd", "STRUCTURED-DATA"),
    (b"<14>1 - h\x01 a - - -", "HOSTNAME"),
])
def test_broken_rfc5424_headers_are_quarantined_naming_the_field(frame, field):
    with pytest.raises(Quarantined) as caught:
        parse_syslog(frame)
    assert caught.value.reason is QuarantineReason.NOT_SYSLOG
    assert caught.value.detail.startswith(field)


def test_structured_data_value_that_is_not_utf8_is_a_bad_encoding():
    with pytest.raises(Quarantined) as caught:
        parse_syslog(b'<14>1 - h a - - [x y="\xff"] ' + XML)
    assert caught.value.reason is QuarantineReason.BAD_ENCODING


def test_rfc3164_header_is_read_best_effort_in_the_year_before_receipt():
    received = datetime(2026, 1, 2, 0, 0, tzinfo=UTC)
    message = parse_syslog(b"<13>Dec 31 23:59:58 pacs-old ATNA[812]: " + XML, received_at=received)
    assert message.format == "rfc3164"
    assert message.timestamp == datetime(2025, 12, 31, 23, 59, 58, tzinfo=UTC)
    assert (message.hostname, message.app_name, message.procid) == ("pacs-old", "ATNA", "812")
    assert message.message == XML


def test_rfc3164_with_only_a_priority_keeps_the_whole_message():
    message = parse_syslog(b"<13>" + XML)
    assert (message.format, message.timestamp, message.hostname) == ("rfc3164", None, None)
    assert message.message == XML


def test_rfc3164_timestamp_followed_directly_by_the_xml():
    message = parse_syslog(b"<13>Mar  4 01:02:03 " + XML, received_at=datetime(2025, 6, 1, tzinfo=UTC))
    assert message.timestamp == datetime(2025, 3, 4, 1, 2, 3, tzinfo=UTC)
    assert message.hostname is None
    assert message.message == XML


def test_read_datetime_keeps_the_offset_and_normalises_to_utc():
    stamp, offset = read_datetime("2025-03-14T10:31:07.250-05:00")
    assert stamp == datetime(2025, 3, 14, 15, 31, 7, 250000, tzinfo=UTC)
    assert offset == timedelta(hours=-5)
    assert read_datetime("2025-03-14T10:31:07") == (datetime(2025, 3, 14, 10, 31, 7, tzinfo=UTC), None)
    assert read_datetime("2025-03-14") is None
    assert read_datetime("14/03/2025 10:31") is None


def test_octet_counted_frames_split_across_reads_are_reassembled():
    first, second = b"<14>1 - h a - - - " + XML, b"<14>1 - h b - - - " + XML * 3
    stream = octet(first) + octet(second)
    framer = StreamFramer()
    frames = []
    for index in range(len(stream)):
        frames += framer.feed(stream[index:index + 1])
    assert frames == [first, second]
    assert framer.octet_counting is True
    assert framer.pending == 0


def test_octet_counted_frame_keeps_newlines_inside_the_message():
    frame = b"<14>1 - h a - - - <AuditMessage>\n  <EventIdentification/>\n</AuditMessage>\n"
    assert StreamFramer().feed(octet(frame) + b"\n" + octet(frame)) == [frame, frame]


def test_newline_framing_from_older_senders():
    framer = StreamFramer()
    assert framer.feed(b"<14>1 - h a - - - one\r\n\n<14>1 - h a - - - tw") == [
        b"<14>1 - h a - - - one"]
    assert framer.feed(b"o\n") == [b"<14>1 - h a - - - two"]
    assert framer.octet_counting is False


def test_an_octet_count_over_the_limit_is_refused_before_its_bytes_arrive():
    framer = StreamFramer(max_bytes=1000)
    good = b"<14>1 - h a - - - " + XML
    with pytest.raises(FramingError) as caught:
        framer.feed(octet(good) + b"10485760 <14>1 ")
    assert "over the 1000 byte limit" in caught.value.reason
    assert caught.value.frames == [good]
    assert framer.pending == 0


def test_an_endless_digit_run_is_refused():
    with pytest.raises(FramingError):
        StreamFramer(max_bytes=65536).feed(b"1" * 10)


def test_a_newline_framed_line_over_the_limit_is_refused_without_waiting_for_its_end():
    framer = StreamFramer(max_bytes=100)
    with pytest.raises(FramingError) as caught:
        framer.feed(b"<14>" + b"x" * 200)
    assert "over the 100 byte limit" in caught.value.reason
    assert framer.pending == 0


@pytest.mark.parametrize("stream", [b"GET / HTTP/1.1\r\n", b"0 ", b"12x<14>"])
def test_streams_that_are_not_syslog_framing_are_refused(stream):
    with pytest.raises(FramingError):
        StreamFramer().feed(stream)


def test_framer_refuses_a_limit_below_one():
    with pytest.raises(ValueError, match="max_bytes"):
        StreamFramer(max_bytes=0)
