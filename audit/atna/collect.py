"""Collect an AuditMessage's attributes and texts from expat's events, without building a tree.

Reading the document as a stream of start/end events costs about half of building an
ElementTree and walking it, which matters at thousands of messages a second. The collector
only gathers what the schema (PS3.15 A.5.1, and the older layout where the DICOM details sit
inside ``ParticipantObjectDescription``) puts where; ``audit.atna.parse`` checks and converts.
"""

from __future__ import annotations

from pyexpat import ParserCreate

from audit.atna.errors import Quarantined, QuarantineReason

Attrs = dict[str, str]

# Children the schema allows under each element the collector descends into.
KNOWN = {
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
NO_CHILDREN: set[str] = set()
# Known elements whose content the message does not need (it stays in the kept XML).
NOT_COLLECTED = {"MediaIdentifier", "MediaType", "ParticipantObjectContainsStudy", "Encrypted", "Anonymized"}


class RawObject:
    """What one ParticipantObjectIdentification holds, as sent."""

    __slots__ = ("accessions", "attrs", "description", "details", "id_types", "mpps", "name", "query",
                 "sop_classes", "studies")

    def __init__(self, attrs: Attrs) -> None:
        self.attrs = attrs
        self.id_types: list[Attrs] = []
        self.name: str | None = None
        self.query: str | None = None
        self.description: str | None = None
        self.details: list[Attrs] = []
        self.accessions: list[Attrs] = []
        self.sop_classes: list[tuple[Attrs, list[Attrs]]] = []
        self.studies: list[Attrs] = []
        self.mpps: list[Attrs] = []


class Collector:
    """Receives one document's expat events and keeps the message's parts by element."""

    def __init__(self, prefixed: bool) -> None:
        self.prefixed = prefixed
        self.stack: list[str] = []
        self.ignored = 0
        self.unknown: dict[str, None] = {}
        self.events: list[Attrs] = []
        self.event_codes: dict[str, list[Attrs]] = {"EventID": [], "EventTypeCode": [], "PurposeOfUse": []}
        self.outcome_descriptions: list[str] = []
        self.participants: list[tuple[Attrs, list[Attrs]]] = []
        self.sources: list[tuple[Attrs, list[Attrs]]] = []
        self.objects: list[RawObject] = []
        self._text: list[str] | None = None
        self._text_depth = 0
        self._text_owner: object = None
        self._text_field = ""

    def feed(self, payload: bytes) -> None:
        """Parse the UTF-8 document; expat's errors propagate as ``pyexpat.ExpatError``."""
        parser = ParserCreate("utf-8")
        parser.buffer_text = True
        parser.StartElementHandler = self._start
        parser.EndElementHandler = self._end
        parser.CharacterDataHandler = self._characters
        parser.Parse(payload, True)

    def _start(self, name: str, attrs: Attrs) -> None:
        """Route one element to where the schema puts it; note and skip the ones it does not have."""
        if self.ignored:
            self.ignored += 1
            return
        if self.prefixed:
            name, attrs = _local(name, attrs)
        stack = self.stack
        if not stack:
            if name != "AuditMessage":
                raise Quarantined(QuarantineReason.NOT_AUDIT_MESSAGE, "root element is not AuditMessage")
            stack.append(name)
            return
        parent = stack[-1]
        if name not in KNOWN.get(parent, NO_CHILDREN):
            self.unknown[f"{parent}/{name}"] = None
            self.ignored = 1
            return
        stack.append(name)
        if name == "ParticipantObjectIdentification":
            self.objects.append(RawObject(attrs))
        elif name == "ActiveParticipant":
            self.participants.append((attrs, []))
        elif name in self.event_codes:
            self.event_codes[name].append(attrs)
        elif name == "RoleIDCode":
            self.participants[-1][1].append(attrs)
        elif name == "AuditSourceIdentification":
            self.sources.append((attrs, []))
        elif name == "AuditSourceTypeCode":
            self.sources[-1][1].append(attrs)
        elif name == "EventIdentification":
            self.events.append(attrs)
        elif name == "EventOutcomeDescription":
            self._capture(self, "outcome_descriptions")
        elif name not in NOT_COLLECTED:
            self._start_object_part(name, attrs)

    def _start_object_part(self, name: str, attrs: Attrs) -> None:
        """An element inside the current ParticipantObjectIdentification."""
        current = self.objects[-1]
        if name == "ParticipantObjectIDTypeCode":
            current.id_types.append(attrs)
        elif name == "SOPClass":
            current.sop_classes.append((attrs, []))
        elif name == "Instance":
            current.sop_classes[-1][1].append(attrs)
        elif name == "Accession":
            current.accessions.append(attrs)
        elif name == "ParticipantObjectDetail":
            current.details.append(attrs)
        elif name == "StudyIDs":
            current.studies.append(attrs)
        elif name == "MPPS":
            current.mpps.append(attrs)
        elif name == "ParticipantObjectName":
            self._capture(current, "name")
        elif name == "ParticipantObjectQuery":
            self._capture(current, "query")
        elif name == "ParticipantObjectDescription":
            self._capture(current, "description")

    def _capture(self, owner: object, field: str) -> None:
        """Collect the text directly inside the element just started into ``owner.field``."""
        self._text, self._text_depth = [], len(self.stack)
        self._text_owner, self._text_field = owner, field

    def _characters(self, data: str) -> None:
        """Text, kept only inside an element whose text is wanted (not inside its children)."""
        if self._text is not None and not self.ignored and len(self.stack) == self._text_depth:
            self._text.append(data)

    def _end(self, name: str) -> None:
        """Close an element, storing its text when it was captured."""
        if self.ignored:
            self.ignored -= 1
            return
        if self._text is not None and len(self.stack) == self._text_depth:
            text = "".join(self._text)
            if self._text_field == "outcome_descriptions":
                self.outcome_descriptions.append(text)
            else:
                setattr(self._text_owner, self._text_field, text)
            self._text = None
        self.stack.pop()


def _local(name: str, attrs: Attrs) -> tuple[str, Attrs]:
    """An element name and its attributes without namespace prefixes (declarations dropped)."""
    if ":" in name:
        name = name.rpartition(":")[2]
    if any(":" in key for key in attrs):
        attrs = {key.rpartition(":")[2]: value for key, value in attrs.items()
                 if not key.startswith("xmlns")}
    return name, attrs
