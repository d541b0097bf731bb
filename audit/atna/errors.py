"""Why a received message is quarantined instead of stored as an audit message."""

from __future__ import annotations

from enum import StrEnum


class QuarantineReason(StrEnum):
    """The kind of problem that keeps a message out of the PACS access log."""

    TOO_LARGE = "too_large"
    NOT_SYSLOG = "not_syslog"
    BAD_ENCODING = "bad_encoding"
    NOT_XML = "not_xml"
    FORBIDDEN_XML = "forbidden_xml"
    NOT_AUDIT_MESSAGE = "not_audit_message"
    INVALID_FIELD = "invalid_field"
    PARSER_ERROR = "parser_error"


class Quarantined(ValueError):
    """A message that cannot be read; ``detail`` names the field and never quotes its content."""

    def __init__(self, reason: QuarantineReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail
