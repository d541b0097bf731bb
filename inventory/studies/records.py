"""Study-level query keys and the plain records built from an archive's answers.

Values are read from the answer's raw bytes, not through pydicom's validating accessors:
those log a malformed value (a patient identifier or date) as a warning. A value that is
malformed becomes a Problem on the record; reading a study never raises.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any

from pydicom import config as pydicom_config
from pydicom.charset import convert_encodings, decode_bytes
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag

UID_PATTERN = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")
SEXES = frozenset({"M", "F", "O", ""})

# (keyword, tag) of every key a study-level C-FIND asks for, in tag order.
STUDY_KEYS: tuple[tuple[str, int], ...] = (
    ("SpecificCharacterSet", 0x00080005),
    ("StudyDate", 0x00080020),
    ("StudyTime", 0x00080030),
    ("AccessionNumber", 0x00080050),
    ("QueryRetrieveLevel", 0x00080052),
    ("ModalitiesInStudy", 0x00080061),
    ("StudyDescription", 0x00081030),
    ("PatientID", 0x00100020),
    ("PatientBirthDate", 0x00100030),
    ("PatientSex", 0x00100040),
    ("StudyInstanceUID", 0x0020000D),
    ("NumberOfStudyRelatedInstances", 0x00201208),
)
TAGS = {keyword: Tag(tag) for keyword, tag in STUDY_KEYS}


@dataclass(frozen=True)
class Problem:
    """A value an archive sent that cannot be used as it is; ``str()`` leaves the value out."""

    field: str
    value: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


@dataclass(frozen=True)
class StudyRecord:
    """One study as the archive described it; unusable values are None and listed in ``problems``."""

    study_uid: str
    study_date: date | None
    patient_id: str
    birth_date: date | None
    sex: str
    modalities: tuple[str, ...]
    accession_number: str
    instance_count: int | None
    description: str
    study_time: str = ""
    problems: tuple[Problem, ...] = ()

    def problem(self, field: str) -> Problem | None:
        """The problem recorded for ``field`` (a DICOM keyword), if any."""
        return next((p for p in self.problems if p.field == field), None)


def put(ds: Dataset, keyword: str, value: object) -> None:
    """Set an element without pydicom's validation, whose warnings would log a patient's value."""
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(keyword)
    ds[tag] = DataElement(tag, dictionary_VR(tag), value, validation_mode=pydicom_config.IGNORE)


def study_identifier(study_date: str = "", study_time: str = "", study_uid: str = "") -> Dataset:
    """Study-level C-FIND keys asking for every field of a StudyRecord, with the given matching keys."""
    ds = Dataset()
    values = {"QueryRetrieveLevel": "STUDY", "StudyDate": study_date, "StudyTime": study_time,
              "StudyInstanceUID": study_uid}
    for keyword, _tag in STUDY_KEYS:
        if keyword != "SpecificCharacterSet":
            put(ds, keyword, values.get(keyword, ""))
    return ds


def raw_text(ds: Dataset, keyword: str, encodings: list[str] | None = None) -> str | None:
    """A value's text without pydicom's validation: None when absent, trailing padding removed."""
    tag = TAGS.get(keyword) or Tag(keyword)
    if tag not in ds:
        return None
    element: Any = ds.get_item(tag)
    value = element.value
    if value is None:
        return ""
    if isinstance(value, bytes | bytearray):
        text = decode_bytes(bytes(value), encodings, {0x5C}) if encodings \
            else bytes(value).decode("latin-1")
    elif isinstance(value, str) or not isinstance(value, Iterable):
        text = str(value)
    else:
        text = "\\".join(str(v) for v in value)
    return text.rstrip("\x00 ").lstrip(" ")


def encodings_of(ds: Dataset) -> list[str]:
    """The Python codecs for the answer's Specific Character Set (ASCII when absent)."""
    declared = raw_text(ds, "SpecificCharacterSet")
    terms = [t.strip() for t in declared.split("\\")] if declared else []
    try:
        return convert_encodings(terms or ["ISO_IR 6"])
    except (LookupError, ValueError):
        return ["iso8859"]


def parse_da(value: str) -> date | None:
    """A DICOM DA value (``YYYYMMDD``) as a date, or None when it is not a real calendar date."""
    if len(value) != 8 or not value.isdigit() or not value.isascii():
        return None
    try:
        return date(int(value[:4]), int(value[4:6]), int(value[6:]))
    except ValueError:
        return None


def date_problem(keyword: str, raw: str | None, today: date) -> tuple[date | None, Problem | None]:
    """Read a date key: the date, or None with why (absent or empty is a problem of its own)."""
    if raw is None or raw == "":
        return None, Problem(keyword, raw or "", "no value")
    parsed = parse_da(raw)
    if parsed is None:
        return None, Problem(keyword, raw, "not a calendar date in the form YYYYMMDD")
    if parsed.year < 1900:
        return None, Problem(keyword, raw, "before 1900")
    if parsed > today:
        return None, Problem(keyword, raw, "in the future")
    return parsed, None


def uid_problem(raw: str) -> str | None:
    """Why ``raw`` is not a DICOM UID (PS3.5 9.1), or None."""
    if not raw:
        return "no value"
    if len(raw) > 64:
        return "longer than 64 characters"
    if not UID_PATTERN.fullmatch(raw):
        return "not a DICOM UID (digits and dots, no spaces or leading zeros)"
    return None


def study_from_identifier(ds: Dataset, today: date) -> StudyRecord:
    """The StudyRecord for one C-FIND match; every unusable value becomes a Problem."""
    encodings = encodings_of(ds)
    problems: list[Problem] = []
    uid = raw_text(ds, "StudyInstanceUID") or ""
    why = uid_problem(uid)
    if why:
        problems.append(Problem("StudyInstanceUID", uid, why))
    study_date, problem = date_problem("StudyDate", raw_text(ds, "StudyDate"), today)
    if problem:
        problems.append(problem)
    raw_birth = raw_text(ds, "PatientBirthDate")
    birth_date: date | None = None
    if raw_birth:
        birth_date, problem = date_problem("PatientBirthDate", raw_birth, today)
        if problem:
            problems.append(problem)
        elif birth_date and study_date and birth_date > study_date:
            problems.append(Problem("PatientBirthDate", raw_birth, "after the study date"))
            birth_date = None
    sex = (raw_text(ds, "PatientSex") or "").upper()
    if sex not in SEXES:
        problems.append(Problem("PatientSex", sex, "not M, F or O"))
    raw_count = raw_text(ds, "NumberOfStudyRelatedInstances") or ""
    count: int | None = None
    if raw_count.strip():
        try:
            count = int(raw_count.strip())
        except ValueError:
            problems.append(Problem("NumberOfStudyRelatedInstances", raw_count, "not a whole number"))
        else:
            if count < 0:
                problems.append(Problem("NumberOfStudyRelatedInstances", raw_count, "negative"))
                count = None
    modalities = tuple(m.strip().upper() for m in (raw_text(ds, "ModalitiesInStudy") or "").split("\\")
                       if m.strip())
    return StudyRecord(
        study_uid=uid, study_date=study_date,
        patient_id=raw_text(ds, "PatientID", encodings) or "",
        birth_date=birth_date, sex=sex, modalities=modalities,
        accession_number=raw_text(ds, "AccessionNumber", encodings) or "",
        instance_count=count, description=raw_text(ds, "StudyDescription", encodings) or "",
        study_time=raw_text(ds, "StudyTime") or "", problems=tuple(problems))
