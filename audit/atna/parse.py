"""Read a DICOM audit message (PS3.15 A.5, and the older RFC 3881 form) into plain dataclasses.

Both flavours are read: DICOM codes (``csd-code``, ``codeSystemName``, ``originalText``) and
RFC 3881 codes (``code``, ``codeSystemName``, ``displayName``), with or without a namespace or
a BOM, in any encoding the XML declaration names. DTDs are refused before parsing, so an XML
bomb or an external entity costs no more than reading its bytes once. Whatever cannot be read
raises ``Quarantined`` with a reason that names the field and never quotes its content.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import logging
import re
from pyexpat import ExpatError

from audit.atna.collect import Attrs, Collector, RawObject
from audit.atna.errors import Quarantined, QuarantineReason
from audit.atna.message import (
    ACCESSION_DETAIL_TYPES,
    ACTIONS,
    OUTCOMES,
    ActiveParticipant,
    AuditMessage,
    AuditSource,
    Code,
    ParticipantObject,
    SOPClass,
)
from audit.atna.query import read_query
from audit.atna.syslog import MAX_MESSAGE_BYTES, read_datetime

log = logging.getLogger(__name__)

_DECLARATION = re.compile(rb"<\?xml[^>]{0,200}?\?>")
_TEXT_DECLARATION = re.compile(r"\A<\?xml[^>]{0,200}?\?>")
_DECLARED_ENCODING = re.compile(rb"""encoding\s*=\s*["']([A-Za-z][A-Za-z0-9._-]{0,39})["']""")
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
         (codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


def parse_audit_message(data: bytes, max_bytes: int = MAX_MESSAGE_BYTES) -> AuditMessage:
    """Parse one AuditMessage document; raise Quarantined (never anything else) when it cannot."""
    if len(data) > max_bytes:
        raise Quarantined(QuarantineReason.TOO_LARGE, f"message of {len(data)} bytes is over the "
                                                       f"{max_bytes} byte limit")
    try:
        text, payload = _decode(data)
        return _build(_collect(payload), text)
    except Quarantined:
        raise
    except Exception as exc:  # a reader bug must quarantine one message, not stop the receiver
        log.warning("audit message reader failed with %s", type(exc).__name__)
        raise Quarantined(QuarantineReason.PARSER_ERROR, f"reader failed ({type(exc).__name__})") from None


def _decode(data: bytes) -> tuple[str, bytes]:
    """The document as text, and as the bytes to hand to the XML parser (UTF-8, no declaration)."""
    encoding = "utf-8"
    for bom, name in _BOMS:
        if data.startswith(bom):
            encoding = name
            break
    else:
        if data.startswith((b"<\x00?\x00", b"\x00<\x00?")):
            encoding = "utf-16-le" if data[0] == 0x3C else "utf-16-be"
        elif data.startswith(b"<?xml") and (declared := _DECLARATION.match(data)) is not None:
            named = _DECLARED_ENCODING.search(declared.group())
            encoding = named.group(1).decode("ascii") if named else "utf-8"
    try:
        codec = codecs.lookup(encoding).name
    except LookupError:
        raise Quarantined(QuarantineReason.BAD_ENCODING, "XML declaration names an unknown encoding") \
            from None
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise Quarantined(QuarantineReason.BAD_ENCODING, f"invalid {codec} at byte {exc.start}") from None
    if codec == "utf-8":
        return text, data
    text = text.lstrip("\ufeff")
    return text, _TEXT_DECLARATION.sub("", text, count=1).encode("utf-8")


def _collect(payload: bytes) -> Collector:
    """The message's parts from the UTF-8 document; a DTD is refused before expat sees it.

    Without a DTD a document can declare no entity and reference nothing external, so refusing
    ``<!DOCTYPE`` in the UTF-8 bytes closes entity expansion (XML bombs) and external entities,
    as defusedxml's forbid_dtd does, and costs nothing: expat never starts on such a document.
    """
    if b"<!DOCTYPE" in payload:
        raise Quarantined(QuarantineReason.FORBIDDEN_XML,
                          "a DTD is not allowed (no entity declarations, no external references)")
    collector = Collector(prefixed=b"xmlns" in payload)
    try:
        collector.feed(payload)
    except ExpatError as exc:
        raise Quarantined(QuarantineReason.NOT_XML,
                          f"not well-formed XML (line {exc.lineno}, column {exc.offset})") from None
    return collector


CODE_CACHE_SIZE = 4096
# The same few codes come in every message: reuse their (immutable) Code values.
_CODES: dict[tuple[str | None, str | None, str | None], Code] = {}


class _Codes:
    """Reads coded values of either flavour, noting whether any was DICOM's."""

    def __init__(self) -> None:
        self.dicom = False

    def one(self, attrs: Attrs, field: str, name: str) -> Code:
        """A coded value; its code is required."""
        value = attrs.get("csd-code")
        if value is not None:
            self.dicom = True
        else:
            value = attrs.get("code")
        key = (value, attrs.get("codeSystemName"), attrs.get("originalText") or attrs.get("displayName"))
        known = _CODES.get(key)
        if known is not None:
            return known
        if not value or not value.strip():
            raise Quarantined(QuarantineReason.INVALID_FIELD, f"{field}{name}: code missing")
        code = Code(value.strip(), (key[1] or "").strip(), (key[2] or "").strip())
        if len(_CODES) >= CODE_CACHE_SIZE:
            _CODES.clear()
        _CODES[key] = code
        return code

    def many(self, found: list[Attrs], field: str, name: str) -> tuple[Code, ...]:
        """Several coded values, in order."""
        return tuple(self.one(attrs, field, name) for attrs in found) if found else ()


def _build(parts: Collector, text: str) -> AuditMessage:
    """Check the collected parts and turn them into an AuditMessage."""
    codes = _Codes()
    if len(parts.events) != 1:
        raise Quarantined(QuarantineReason.INVALID_FIELD, "EventIdentification: exactly one is required")
    event = _event(parts, codes)
    participants = tuple(_participant(attrs, roles, n, codes)
                         for n, (attrs, roles) in enumerate(parts.participants, start=1))
    if not parts.sources:
        raise Quarantined(QuarantineReason.INVALID_FIELD, "AuditSourceIdentification: missing")
    sources = tuple(_source(attrs, types, n, codes)
                    for n, (attrs, types) in enumerate(parts.sources, start=1))
    objects = tuple(_object(raw, n, codes) for n, raw in enumerate(parts.objects, start=1))
    return AuditMessage(
        flavour="dicom" if codes.dicom else "rfc3881", participants=participants, sources=sources,
        objects=objects, unknown_elements=tuple(parts.unknown), xml=text, **event)


def _event(parts: Collector, codes: _Codes) -> dict:
    """The EventIdentification fields, as keyword arguments of AuditMessage."""
    get = parts.events[0].get
    ids = parts.event_codes["EventID"]
    if len(ids) != 1:
        raise Quarantined(QuarantineReason.INVALID_FIELD, "EventID: exactly one is required")
    action = get("EventActionCode")
    if action is not None and action.strip() not in ACTIONS:
        raise Quarantined(QuarantineReason.INVALID_FIELD, "EventActionCode: not one of C, R, U, D, E")
    outcome_text = (get("EventOutcomeIndicator") or "").strip()
    if not outcome_text.isdigit() or int(outcome_text) not in OUTCOMES:
        raise Quarantined(QuarantineReason.INVALID_FIELD, "EventOutcomeIndicator: not one of 0, 4, 8, 12")
    when = read_datetime((get("EventDateTime") or "").strip())
    if when is None:
        raise Quarantined(QuarantineReason.INVALID_FIELD, "EventDateTime: missing or not an xsd:dateTime")
    descriptions = parts.outcome_descriptions
    return {
        "event_id": codes.one(ids[0], "", "EventID"),
        "event_types": codes.many(parts.event_codes["EventTypeCode"], "", "EventTypeCode"),
        "purposes_of_use": codes.many(parts.event_codes["PurposeOfUse"], "", "PurposeOfUse"),
        "action": action.strip() if action is not None else None,
        "outcome": int(outcome_text),
        "outcome_description": _optional(descriptions[0]) if descriptions else None,
        "event_time": when[0],
        "event_time_offset": when[1],
    }


def _participant(attrs: Attrs, roles: list[Attrs], number: int, codes: _Codes) -> ActiveParticipant:
    """One ActiveParticipant; ``number`` counts from 1 for error messages."""
    get, field = attrs.get, f"ActiveParticipant {number}: "
    user_id = _optional(get("UserID"))
    if user_id is None:
        raise Quarantined(QuarantineReason.INVALID_FIELD, f"{field}UserID missing")
    return ActiveParticipant(
        user_id=user_id,
        alternative_user_id=_optional(get("AlternativeUserID")),
        user_name=_optional(get("UserName")),
        is_requestor=_boolean(get("UserIsRequestor"), field, "UserIsRequestor"),
        roles=codes.many(roles, field, "RoleIDCode"),
        network_access_point_id=_optional(get("NetworkAccessPointID")),
        network_access_point_type=_number(get("NetworkAccessPointTypeCode"),
                                          field, "NetworkAccessPointTypeCode"))


def _source(attrs: Attrs, types: list[Attrs], number: int, codes: _Codes) -> AuditSource:
    """One AuditSourceIdentification (older senders put the type code in a ``code`` attribute)."""
    get, field = attrs.get, f"AuditSourceIdentification {number}: "
    source_id = _optional(get("AuditSourceID"))
    if source_id is None:
        raise Quarantined(QuarantineReason.INVALID_FIELD, f"{field}AuditSourceID missing")
    found = codes.many(types, field, "AuditSourceTypeCode")
    legacy = _optional(get("code"))
    if not found and legacy is not None:
        found = (Code(legacy, "", ""),)
    return AuditSource(source_id, _optional(get("AuditEnterpriseSiteID")), found)


def _object(raw: RawObject, number: int, codes: _Codes) -> ParticipantObject:
    """One ParticipantObjectIdentification."""
    get, field = raw.attrs.get, f"ParticipantObjectIdentification {number}: "
    object_id = _optional(get("ParticipantObjectID"))
    if object_id is None:
        raise Quarantined(QuarantineReason.INVALID_FIELD, f"{field}ParticipantObjectID missing")
    details = tuple(_detail(attrs) for attrs in raw.details) if raw.details else ()
    accessions = [a.get("Number", "").strip() for a in raw.accessions]
    accessions += [value.decode("utf-8", "replace").strip() for kind, value in details
                   if kind.strip().lower() in ACCESSION_DETAIL_TYPES]
    return ParticipantObject(
        object_id=object_id,
        type_code=_number(get("ParticipantObjectTypeCode"), field, "ParticipantObjectTypeCode"),
        role=_number(get("ParticipantObjectTypeCodeRole"), field, "ParticipantObjectTypeCodeRole"),
        id_type=codes.one(raw.id_types[0], field, "ParticipantObjectIDTypeCode") if raw.id_types else None,
        name=_optional(raw.name),
        query=read_query(raw.query) if raw.query is not None else None,
        description=_optional(raw.description),
        details=details,
        accession_numbers=tuple(dict.fromkeys(a for a in accessions if a)) if accessions else (),
        sop_classes=tuple(_sop_class(attrs, instances, field) for attrs, instances in raw.sop_classes),
        study_uids=_uids(raw.studies),
        mpps_uids=_uids(raw.mpps),
        lifecycle=_number(get("ParticipantObjectDataLifeCycle"), field, "ParticipantObjectDataLifeCycle"),
        sensitivity=_optional(get("ParticipantObjectSensitivity")))


def _detail(attrs: Attrs) -> tuple[str, bytes]:
    """A ParticipantObjectDetail type and its value, base64-decoded when it is base64."""
    value = attrs.get("value", "")
    try:
        return attrs.get("type", ""), base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return attrs.get("type", ""), value.encode("utf-8")


def _sop_class(attrs: Attrs, instances: list[Attrs], field: str) -> SOPClass:
    """A SOPClass entry with its instance count and any instance UIDs."""
    return SOPClass(
        uid=attrs.get("UID", "").strip(),
        instances=_number(attrs.get("NumberOfInstances"), field, "SOPClass NumberOfInstances"),
        instance_uids=_uids(instances))


def _uids(found: list[Attrs]) -> tuple[str, ...]:
    """The distinct, non-blank ``UID`` attributes of some elements, in order."""
    if not found:
        return ()
    return tuple(dict.fromkeys(uid for attrs in found if (uid := attrs.get("UID", "").strip())))


def _optional(value: str | None) -> str | None:
    """A stripped value, None when absent or blank."""
    if value is None:
        return None
    value = value.strip()
    return value or None


def _number(value: str | None, field: str, name: str) -> int | None:
    """A non-negative whole-number attribute, None when absent."""
    if value is None:
        return None
    if value.isdigit() and len(value) < 10:
        return int(value)
    value = value.strip()
    if not value:
        return None
    if not value.isdigit() or len(value) > 9:
        raise Quarantined(QuarantineReason.INVALID_FIELD, f"{field}{name}: not a whole number")
    return int(value)


def _boolean(value: str | None, field: str, name: str) -> bool | None:
    """An xsd:boolean attribute, None when absent."""
    if value is None:
        return None
    normalised = value.strip().lower()
    if normalised in ("true", "1"):
        return True
    if normalised in ("false", "0"):
        return False
    raise Quarantined(QuarantineReason.INVALID_FIELD, f"{field}{name}: not true or false")
