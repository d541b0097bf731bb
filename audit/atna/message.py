"""The values an audit message (DICOM PS3.15 A.5) is read into, and the labels of its DCM codes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from audit.atna.query import Query

DCM = "DCM"
EVENT_IDS = {
    "110100": "Application Activity", "110101": "Audit Log Used",
    "110102": "Begin Transferring DICOM Instances", "110103": "DICOM Instances Accessed",
    "110104": "DICOM Instances Transferred", "110105": "DICOM Study Deleted", "110106": "Export",
    "110107": "Import", "110108": "Network Entry", "110109": "Order Record", "110110": "Patient Record",
    "110111": "Procedure Record", "110112": "Query", "110113": "Security Alert",
    "110114": "User Authentication",
}
EVENT_TYPES = {
    "110120": "Application Start", "110121": "Application Stop", "110122": "Login", "110123": "Logout",
    "110124": "Attach", "110125": "Detach", "110126": "Node Authentication",
    "110127": "Emergency Override Started", "110128": "Network Configuration",
    "110129": "Security Configuration", "110130": "Hardware Configuration",
    "110131": "Software Configuration", "110132": "Use of Restricted Function",
    "110133": "Audit Recording Stopped", "110134": "Audit Recording Started",
    "110135": "Object Security Attributes Changed", "110136": "Security Roles Changed",
    "110137": "User Security Attributes Changed", "110138": "Emergency Override Stopped",
    "110139": "Remote Service Operation Started", "110140": "Remote Service Operation Stopped",
    "110141": "Local Service Operation Started", "110142": "Local Service Operation Stopped",
}
ROLE_IDS = {
    "110150": "Application", "110151": "Application Launcher", "110152": "Destination Role ID",
    "110153": "Source Role ID", "110154": "Destination Media", "110155": "Source Media",
}
OBJECT_ID_TYPES = {"110180": "Study Instance UID", "110181": "SOP Class UID", "110182": "Node ID"}
DCM_LABELS = {**EVENT_IDS, **EVENT_TYPES, **ROLE_IDS, **OBJECT_ID_TYPES}
ACTIONS = {"C": "Create", "R": "Read", "U": "Update", "D": "Delete", "E": "Execute"}
OUTCOMES = {0: "Success", 4: "Minor failure", 8: "Serious failure", 12: "Major failure"}
STUDY_INSTANCE_UID = "110180"
PATIENT_NUMBER = "2"
ACCESSION_DETAIL_TYPES = {"accession", "accessionnumber", "accession number"}


@dataclass(frozen=True, slots=True)
class Code:
    """A coded value as the sender wrote it: code, code system name and the sender's text."""

    code: str
    system: str
    text: str

    @property
    def meaning(self) -> str:
        """The standard label of a DCM code, else the sender's text, else the bare code."""
        if self.system in (DCM, "") and self.code in DCM_LABELS:
            return DCM_LABELS[self.code]
        return self.text or self.code


@dataclass(frozen=True, slots=True)
class ActiveParticipant:
    """A user or process taking part in the event (``UserIsRequestor`` None when not sent)."""

    user_id: str
    alternative_user_id: str | None
    user_name: str | None
    is_requestor: bool | None
    roles: tuple[Code, ...]
    network_access_point_id: str | None
    network_access_point_type: int | None


@dataclass(frozen=True, slots=True)
class AuditSource:
    """The system that detected the event and wrote the message."""

    source_id: str
    enterprise_site_id: str | None
    types: tuple[Code, ...]


@dataclass(frozen=True, slots=True)
class SOPClass:
    """SOP instances of one class inside a study object (count None when not sent)."""

    uid: str
    instances: int | None
    instance_uids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ParticipantObject:
    """A thing the event touched: a patient, a study, a query, a report, a node."""

    object_id: str
    type_code: int | None
    role: int | None
    id_type: Code | None
    name: str | None
    query: Query | None
    description: str | None
    details: tuple[tuple[str, bytes], ...]
    accession_numbers: tuple[str, ...]
    sop_classes: tuple[SOPClass, ...]
    study_uids: tuple[str, ...]
    mpps_uids: tuple[str, ...]
    lifecycle: int | None
    sensitivity: str | None

    @property
    def is_patient(self) -> bool:
        """Whether this object is a patient (type 1 person, role 1 patient, or a patient number id)."""
        if self.type_code == 1 and self.role == 1:
            return True
        return self.id_type is not None and self.id_type.code == PATIENT_NUMBER and self.role in (1, None)

    @property
    def is_study(self) -> bool:
        """Whether the object id is a Study Instance UID."""
        return self.id_type is not None and self.id_type.code == STUDY_INSTANCE_UID


@dataclass(frozen=True, slots=True)
class AuditMessage:
    """One audit message; ``xml`` is the whole document as text, kept beside what was extracted."""

    flavour: str
    event_id: Code
    event_types: tuple[Code, ...]
    action: str | None
    outcome: int
    outcome_description: str | None
    event_time: datetime
    event_time_offset: timedelta | None
    purposes_of_use: tuple[Code, ...]
    participants: tuple[ActiveParticipant, ...]
    sources: tuple[AuditSource, ...]
    objects: tuple[ParticipantObject, ...]
    unknown_elements: tuple[str, ...]
    xml: str

    @property
    def patients(self) -> tuple[ParticipantObject, ...]:
        """The participant objects that are patients."""
        return tuple(obj for obj in self.objects if obj.is_patient)

    @property
    def studies(self) -> tuple[ParticipantObject, ...]:
        """The participant objects that are studies."""
        return tuple(obj for obj in self.objects if obj.is_study)

    @property
    def study_uids(self) -> tuple[str, ...]:
        """Every Study Instance UID named, as object id or in ParticipantObjectContainsStudy."""
        found = [obj.object_id for obj in self.studies]
        found += [uid for obj in self.objects for uid in obj.study_uids]
        return tuple(dict.fromkeys(found))

    @property
    def accession_numbers(self) -> tuple[str, ...]:
        """Every accession number named by any object."""
        return tuple(dict.fromkeys(n for obj in self.objects for n in obj.accession_numbers))

    @property
    def requestors(self) -> tuple[ActiveParticipant, ...]:
        """The participants flagged as the requestor (who asked for the access)."""
        return tuple(p for p in self.participants if p.is_requestor)
