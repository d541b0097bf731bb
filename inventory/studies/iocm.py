"""IHE Imaging Object Change Management: the rejection note for a study past retention.

A Key Object Selection document (SOP Class 1.2.840.10008.5.1.4.1.1.88.59) titled (113039, DCM,
"Data Retention Policy Expired") that lists every instance of the study asks an archive that
supports IOCM (dcm4chee-arc) to reject them. Building it needs the study's instance list, read
here by series- and instance-level C-FINDs; an answer the archive cut short is an error, as a
note that leaves instances out would leave them on the archive.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

# pynetdicom creates its SOP classes at import time; its type information does not list them
from pynetdicom.sop_class import KeyObjectSelectionDocumentStorage  # type: ignore[attr-defined]

from inventory.studies.dimse import (
    STUDY_ROOT_FIND,
    Archive,
    ArchiveConnection,
    ArchiveError,
    FindAnswer,
    IncompleteAnswer,
    connect,
)
from inventory.studies.query import check_study_uid
from inventory.studies.records import encodings_of, parse_da, put, raw_text, uid_problem

KEY_OBJECT_SELECTION = str(KeyObjectSelectionDocumentStorage)


@dataclass(frozen=True)
class Code:
    """A coded concept: value, scheme, meaning."""

    value: str
    scheme: str
    meaning: str


DATA_RETENTION_POLICY_EXPIRED = Code("113039", "DCM", "Data Retention Policy Expired")
KEY_OBJECT_DESCRIPTION = Code("113012", "DCM", "Key Object Description")


class StudyNotFound(ArchiveError):
    """The archive has no study with that UID."""


@dataclass(frozen=True)
class InstanceRef:
    """One stored instance: its SOP class and SOP instance UIDs."""

    sop_class_uid: str
    sop_instance_uid: str


@dataclass(frozen=True)
class SeriesRef:
    """One series of a study with its instances."""

    series_uid: str
    modality: str
    instances: tuple[InstanceRef, ...]


@dataclass(frozen=True)
class StudyContents:
    """A study's patient and study attributes as stored, and every series and instance in it."""

    study_uid: str
    patient_id: str
    patient_name: str
    birth_date: str
    sex: str
    study_date: str
    study_time: str
    accession_number: str
    series: tuple[SeriesRef, ...]

    @property
    def instance_count(self) -> int:
        """How many instances the study holds."""
        return sum(len(s.instances) for s in self.series)


def _keys(level: str, **values: str) -> Dataset:
    """C-FIND keys at ``level`` with the given keyword values."""
    ds = Dataset()
    put(ds, "QueryRetrieveLevel", level)
    for keyword, value in values.items():
        put(ds, keyword, value)
    return ds


def _whole(answer: FindAnswer, what: str, archive: Archive) -> FindAnswer:
    """``answer``, or IncompleteAnswer when the archive cut it short or sent unreadable matches."""
    if answer.truncated or answer.unreadable:
        raise IncompleteAnswer(f"{archive.address} did not return the whole list of {what} "
                               f"(status 0x{answer.status:04X}); raise its query limit for PACS Desk")
    return answer


def _uid(ds: Dataset, keyword: str, what: str) -> str:
    """A UID from an answer, or IncompleteAnswer when it is not a usable UID."""
    value = raw_text(ds, keyword) or ""
    if uid_problem(value):
        raise IncompleteAnswer(f"the archive returned {what} whose {keyword} is not a valid UID")
    return value


def list_study_instances(archive: Archive, study_uid: str, max_instances: int = 100_000) -> StudyContents:
    """Every series and instance of the study, from STUDY, SERIES and IMAGE level C-FINDs."""
    key = check_study_uid(study_uid)
    with connect(archive, [STUDY_ROOT_FIND]) as connection:
        study = _read_study(connection, key)
        answer = _whole(connection.find(_keys("SERIES", StudyInstanceUID=key, SeriesInstanceUID="",
                                              Modality="")), "series", archive)
        series: list[SeriesRef] = []
        total = 0
        for match in answer.matches:
            series_uid = _uid(match, "SeriesInstanceUID", "a series")
            found = _whole(connection.find(_keys("IMAGE", StudyInstanceUID=key, SeriesInstanceUID=series_uid,
                                                 SOPInstanceUID="", SOPClassUID="")), "instances", archive)
            instances = tuple(InstanceRef(_uid(m, "SOPClassUID", "an instance"),
                                          _uid(m, "SOPInstanceUID", "an instance")) for m in found.matches)
            total += len(instances)
            if total > max_instances:
                raise IncompleteAnswer(f"the study holds more than {max_instances} instances")
            series.append(SeriesRef(series_uid, raw_text(match, "Modality") or "", instances))
    return StudyContents(**study, series=tuple(series))


def _read_study(connection: ArchiveConnection, key: str) -> dict[str, str]:
    """The patient and study attributes of the study with UID ``key``."""
    keywords = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                "AccessionNumber")
    answer = connection.find(_keys("STUDY", StudyInstanceUID=key, **dict.fromkeys(keywords, "")))
    matches = [m for m in answer.matches if raw_text(m, "StudyInstanceUID") == key]
    if not matches:
        raise StudyNotFound(f"{connection.archive.address} has no such study")
    match = matches[0]
    encodings = encodings_of(match)
    text = {keyword: raw_text(match, keyword, encodings) or "" for keyword in keywords}
    return {"study_uid": key, "patient_id": text["PatientID"], "patient_name": text["PatientName"],
            "birth_date": text["PatientBirthDate"], "sex": text["PatientSex"],
            "study_date": text["StudyDate"], "study_time": text["StudyTime"],
            "accession_number": text["AccessionNumber"]}


def _code(code: Code) -> Dataset:
    """A code sequence item."""
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = code.value, code.scheme, code.meaning
    return item


def _value_type(sop_class_uid: str) -> str:
    """The SR value type that references an instance of this SOP class (TID 2010)."""
    name = UID(sop_class_uid).name
    if "Image Storage" in name:
        return "IMAGE"
    if "Waveform" in name:
        return "WAVEFORM"
    return "COMPOSITE"


def _time_or_empty(value: str) -> str:
    """A stored DICOM TM value when it looks like one, else empty (Type 2)."""
    head = value.split(".")[0]
    return value if head.isdigit() and len(head) in (2, 4, 6) else ""


def build_rejection_note(contents: StudyContents, *, reason: Code = DATA_RETENTION_POLICY_EXPIRED,
                         description: str = "", now: datetime | None = None,
                         manufacturer: str = "PACS Desk") -> Dataset:
    """The Key Object Selection document that rejects every instance of ``contents``."""
    if not contents.series or not contents.instance_count:
        raise ValueError("contents: a rejection note needs at least one instance to reference")
    if uid_problem(contents.study_uid):
        raise ValueError("contents.study_uid: not a valid DICOM UID, so no note can reference the study")
    moment = now or datetime.now()
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = KEY_OBJECT_SELECTION
    ds.SOPInstanceUID = generate_uid()
    ds.InstanceCreationDate = ds.ContentDate = moment.strftime("%Y%m%d")
    ds.InstanceCreationTime = ds.ContentTime = moment.strftime("%H%M%S")
    put(ds, "PatientName", contents.patient_name)
    put(ds, "PatientID", contents.patient_id)
    put(ds, "PatientBirthDate", contents.birth_date if parse_da(contents.birth_date) else "")
    put(ds, "PatientSex", contents.sex if contents.sex in ("M", "F", "O") else "")
    put(ds, "StudyInstanceUID", contents.study_uid)
    put(ds, "StudyDate", contents.study_date if parse_da(contents.study_date) else "")
    put(ds, "StudyTime", _time_or_empty(contents.study_time))
    put(ds, "AccessionNumber", contents.accession_number)
    ds.ReferringPhysicianName = ""
    ds.StudyID = ""
    ds.Modality = "KO"
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = 9999
    ds.ReferencedPerformedProcedureStepSequence = Sequence()
    ds.Manufacturer = manufacturer
    ds.InstanceNumber = 1
    ds.ValueType = "CONTAINER"
    ds.ConceptNameCodeSequence = Sequence([_code(reason)])
    template = Dataset()
    template.MappingResource, template.TemplateIdentifier = "DCMR", "2010"
    ds.ContentTemplateSequence = Sequence([template])
    ds.ContinuityOfContent = "SEPARATE"
    items: list[Dataset] = []
    if description:
        text = Dataset()
        text.RelationshipType, text.ValueType = "CONTAINS", "TEXT"
        text.ConceptNameCodeSequence = Sequence([_code(KEY_OBJECT_DESCRIPTION)])
        text.TextValue = description
        items.append(text)
    referenced_series = []
    for series in contents.series:
        refs = []
        for instance in series.instances:
            ref = Dataset()
            ref.ReferencedSOPClassUID = instance.sop_class_uid
            ref.ReferencedSOPInstanceUID = instance.sop_instance_uid
            refs.append(ref)
            item = Dataset()
            item.RelationshipType, item.ValueType = "CONTAINS", _value_type(instance.sop_class_uid)
            item.ReferencedSOPSequence = Sequence([ref])
            items.append(item)
        entry = Dataset()
        entry.SeriesInstanceUID = series.series_uid
        entry.ReferencedSOPSequence = Sequence(refs)
        referenced_series.append(entry)
    ds.ContentSequence = Sequence(items)
    evidence = Dataset()
    evidence.StudyInstanceUID = contents.study_uid
    evidence.ReferencedSeriesSequence = Sequence(referenced_series)
    ds.CurrentRequestedProcedureEvidenceSequence = Sequence([evidence])
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def send_rejection_note(archive: Archive, note: Dataset) -> None:
    """C-STORE the rejection note to the archive; raises an ArchiveError unless it is stored."""
    if str(getattr(note, "SOPClassUID", "")) != KEY_OBJECT_SELECTION:
        raise ValueError("note: must be a Key Object Selection document (build_rejection_note)")
    with connect(archive, [KEY_OBJECT_SELECTION]) as connection:
        connection.store(note)
