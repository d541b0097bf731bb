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
from xml.etree.ElementTree import XML, Element, ParseError

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

_KNOWN = {
    "AuditMessage": {"EventIdentification", "ActiveParticipant", "AuditSourceIdentification",
                     "ParticipantObjectIdentification"},
    "EventIdentification": {"EventID", "EventTypeCode", "EventOutcomeDescription", "PurposeOfUse"},
    "ActiveParticipant": {"RoleIDCode", "MediaIdentifier"},
    "MediaIdentifier": {"MediaType"},
    "AuditSourceIdentification": {"AuditSourceTypeCode"},
    "ParticipantObjectIdentification": {
        "ParticipantObjectIDTypeCode", "ParticipantObjectName", "ParticipantObjectQuery",
        "ParticipantObjectDetail", "ParticipantObjectDescription", "SOPClass", "Accession", "MPPS",
        "ParticipantObjectContainsStudy", "Encrypted", "Anonymized"},
    "ParticipantObjectDescription": {"SOPClass", "Accession", "MPPS", "ParticipantObjectContainsStudy",
                                     "Encrypted", "Anonymized"},
    "SOPClass": {"Instance"},
    "ParticipantObjectContainsStudy": {"StudyIDs"},
}
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
        root = _parse_xml(payload)
        return _read(root, text)
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


def _parse_xml(payload: bytes) -> Element:
    """The document's root element (names without namespaces); a DTD is refused before parsing.

    Without a DTD a document can declare no entity and reference nothing external, so refusing
    ``<!DOCTYPE`` in the UTF-8 bytes (before expat sees them) closes entity expansion and external
    entities, as defusedxml's forbid_dtd does, while keeping the C tree builder's speed.
    """
    if b"<!DOCTYPE" in payload:
        raise Quarantined(QuarantineReason.FORBIDDEN_XML,
                          "a DTD is not allowed (no entity declarations, no external references)")
    try:
        root = XML(payload)
    except ParseError as exc:
        line, column = exc.position
        raise Quarantined(QuarantineReason.NOT_XML,
                          f"not well-formed XML (line {line}, column {column})") from None
    if b"xmlns" in payload:
        _strip_namespaces(root)
    return root


def _strip_namespaces(root: Element) -> None:
    """Rename every element and attribute to its local name, in place."""
    for element in root.iter():
        if element.tag[:1] == "{":
            element.tag = element.tag.rpartition("}")[2]
        if any(key[:1] == "{" for key in element.attrib):
            element.attrib = {key.rpartition("}")[2]: value for key, value in element.attrib.items()}


class _Reader:
    """Walks one AuditMessage tree, noting elements it does not know."""

    def __init__(self) -> None:
        self.unknown: dict[str, None] = {}
        self.dicom_codes = False

    def children(self, element: Element, parent: str) -> dict[str, list[Element]]:
        """The element's children grouped by name; names the schema does not have are noted."""
        allowed = _KNOWN[parent]
        groups: dict[str, list[Element]] = {}
        for child in element:
            tag = child.tag
            if tag in groups:
                groups[tag].append(child)
            else:
                groups[tag] = [child]
                if tag not in allowed:
                    self.unknown[f"{parent}/{tag}"] = None
        return groups

    def code(self, element: Element, field: str, name: str) -> Code:
        """A coded value of either flavour; its code is required."""
        get = element.attrib.get
        value = get("csd-code")
        if value is not None:
            self.dicom_codes = True
        else:
            value = get("code")
        if not value or not value.strip():
            raise Quarantined(QuarantineReason.INVALID_FIELD, f"{field}{name}: code missing")
        text = get("originalText") or get("displayName") or ""
        return Code(value.strip(), (get("codeSystemName") or "").strip(), text.strip())

    def codes(self, elements: list[Element] | None, field: str, name: str) -> tuple[Code, ...]:
        """Several coded values (none when the element is absent)."""
        return tuple(self.code(el, field, name) for el in elements) if elements else ()


def _read(root: Element, text: str) -> AuditMessage:
    """Extract the audit message from its parsed tree."""
    if root.tag != "AuditMessage":
        raise Quarantined(QuarantineReason.NOT_AUDIT_MESSAGE, "root element is not AuditMessage")
    reader = _Reader()
    children = reader.children(root, "AuditMessage")
    events = children.get("EventIdentification", [])
    if len(events) != 1:
        raise Quarantined(QuarantineReason.INVALID_FIELD, "EventIdentification: exactly one is required")
    event = _read_event(reader, events[0])
    participants = tuple(_read_participant(reader, el, n) for n, el in enumerate(
        children.get("ActiveParticipant", ()), start=1))
    sources = tuple(_read_source(reader, el, n) for n, el in enumerate(
        children.get("AuditSourceIdentification", ()), start=1))
    if not sources:
        raise Quarantined(QuarantineReason.INVALID_FIELD, "AuditSourceIdentification: missing")
    objects = tuple(_read_object(reader, el, n) for n, el in enumerate(
        children.get("ParticipantObjectIdentification", ()), start=1))
    return AuditMessage(
        flavour="dicom" if reader.dicom_codes else "rfc3881", participants=participants,
        sources=sources, objects=objects, unknown_elements=tuple(reader.unknown), xml=text, **event)


def _read_event(reader: _Reader, element: Element) -> dict:
    """The EventIdentification fields, as keyword arguments of AuditMessage."""
    get, children = element.attrib.get, reader.children(element, "EventIdentification")
    ids = children.get("EventID", [])
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
    return {
        "event_id": reader.code(ids[0], "", "EventID"),
        "event_types": reader.codes(children.get("EventTypeCode"), "", "EventTypeCode"),
        "purposes_of_use": reader.codes(children.get("PurposeOfUse"), "", "PurposeOfUse"),
        "action": action.strip() if action is not None else None,
        "outcome": int(outcome_text),
        "outcome_description": _first_text(children.get("EventOutcomeDescription")),
        "event_time": when[0],
        "event_time_offset": when[1],
    }


def _read_participant(reader: _Reader, element: Element, number: int) -> ActiveParticipant:
    """One ActiveParticipant; ``number`` counts from 1 for error messages."""
    get, children = element.attrib.get, reader.children(element, "ActiveParticipant")
    for media in children.get("MediaIdentifier", ()):
        reader.children(media, "MediaIdentifier")
    field = f"ActiveParticipant {number}: "
    user_id = _optional(get("UserID"))
    if user_id is None:
        raise Quarantined(QuarantineReason.INVALID_FIELD, f"{field}UserID missing")
    return ActiveParticipant(
        user_id=user_id,
        alternative_user_id=_optional(get("AlternativeUserID")),
        user_name=_optional(get("UserName")),
        is_requestor=_boolean(get("UserIsRequestor"), field, "UserIsRequestor"),
        roles=reader.codes(children.get("RoleIDCode"), field, "RoleIDCode"),
        network_access_point_id=_optional(get("NetworkAccessPointID")),
        network_access_point_type=_number(get("NetworkAccessPointTypeCode"),
                                          field, "NetworkAccessPointTypeCode"))


def _read_source(reader: _Reader, element: Element, number: int) -> AuditSource:
    """One AuditSourceIdentification (older senders put the type code in a ``code`` attribute)."""
    get, children = element.attrib.get, reader.children(element, "AuditSourceIdentification")
    field = f"AuditSourceIdentification {number}: "
    source_id = _optional(get("AuditSourceID"))
    if source_id is None:
        raise Quarantined(QuarantineReason.INVALID_FIELD, f"{field}AuditSourceID missing")
    types = reader.codes(children.get("AuditSourceTypeCode"), field, "AuditSourceTypeCode")
    legacy = _optional(get("code"))
    if not types and legacy is not None:
        types = (Code(legacy, "", ""),)
    return AuditSource(source_id, _optional(get("AuditEnterpriseSiteID")), types)


def _read_object(reader: _Reader, element: Element, number: int) -> ParticipantObject:
    """One ParticipantObjectIdentification, with the description's DICOM contents in either place."""
    get = element.attrib.get
    children = reader.children(element, "ParticipantObjectIdentification")
    field = f"ParticipantObjectIdentification {number}: "
    object_id = _optional(get("ParticipantObjectID"))
    if object_id is None:
        raise Quarantined(QuarantineReason.INVALID_FIELD, f"{field}ParticipantObjectID missing")
    contents, description = children, None
    if "ParticipantObjectDescription" in children:
        contents = {name: list(elements) for name, elements in children.items()}
        for old_form in children["ParticipantObjectDescription"]:
            for name, elements in reader.children(old_form, "ParticipantObjectDescription").items():
                contents.setdefault(name, []).extend(elements)
            description = description or _optional(old_form.text)
    id_types = children.get("ParticipantObjectIDTypeCode")
    details = tuple(_detail(el) for el in children.get("ParticipantObjectDetail", ()))
    accessions = [el.get("Number", "").strip() for el in contents.get("Accession", ())]
    accessions += [value.decode("utf-8", "replace").strip() for kind, value in details
                   if kind.strip().lower() in ACCESSION_DETAIL_TYPES]
    queries = children.get("ParticipantObjectQuery")
    studies = contents.get("ParticipantObjectContainsStudy")
    return ParticipantObject(
        object_id=object_id,
        type_code=_number(get("ParticipantObjectTypeCode"), field, "ParticipantObjectTypeCode"),
        role=_number(get("ParticipantObjectTypeCodeRole"), field, "ParticipantObjectTypeCodeRole"),
        id_type=reader.code(id_types[0], field, "ParticipantObjectIDTypeCode") if id_types else None,
        name=_first_text(children.get("ParticipantObjectName")),
        query=read_query(queries[0].text or "") if queries else None,
        description=description,
        details=details,
        accession_numbers=tuple(dict.fromkeys(a for a in accessions if a)) if accessions else (),
        sop_classes=tuple(_sop_class(reader, el, field) for el in contents.get("SOPClass", ())),
        study_uids=tuple(dict.fromkeys(uid for el in studies for uid in _study_ids(reader, el)))
        if studies else (),
        mpps_uids=tuple(uid for el in contents.get("MPPS", ()) if (uid := el.get("UID", "").strip())),
        lifecycle=_number(get("ParticipantObjectDataLifeCycle"), field, "ParticipantObjectDataLifeCycle"),
        sensitivity=_optional(get("ParticipantObjectSensitivity")))


def _detail(element: Element) -> tuple[str, bytes]:
    """A ParticipantObjectDetail type and its value, base64-decoded when it is base64."""
    value = element.get("value", "")
    try:
        return element.get("type", ""), base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return element.get("type", ""), value.encode("utf-8")


def _sop_class(reader: _Reader, element: Element, field: str) -> SOPClass:
    """A SOPClass entry with its instance count and any instance UIDs."""
    children = reader.children(element, "SOPClass")
    return SOPClass(
        uid=element.get("UID", "").strip(),
        instances=_number(element.get("NumberOfInstances"), field, "SOPClass NumberOfInstances"),
        instance_uids=tuple(uid for el in children.get("Instance", ()) if (uid := el.get("UID", "").strip())))


def _study_ids(reader: _Reader, element: Element) -> list[str]:
    """The Study Instance UIDs of a ParticipantObjectContainsStudy."""
    children = reader.children(element, "ParticipantObjectContainsStudy")
    return [uid for el in children.get("StudyIDs", ()) if (uid := el.get("UID", "").strip())]


def _first_text(elements: list[Element] | None) -> str | None:
    """The stripped text of the first of some elements, None when absent or blank."""
    return _optional(elements[0].text) if elements else None


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
