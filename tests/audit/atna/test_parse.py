"""audit.atna.parse: the samples of both flavours, encodings, and hostile or broken documents."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from audit.atna.errors import Quarantined, QuarantineReason
from audit.atna.message import Code
from audit.atna.parse import parse_audit_message

SAMPLES = Path(__file__).parent / "samples"
PATIENT_ID, PATIENT_NAME = "MRN-000417^^^HOSP", "TEST^ALICE"
STUDY_UID, ACCESSION = "1.2.826.0.1.3680043.8.498.10001", "A-2025-000981"


def sample(name: str) -> bytes:
    """The bytes of one sample message."""
    return (SAMPLES / name).read_bytes()


@pytest.mark.parametrize(("name", "event", "types", "action", "outcome"), [
    ("dicom_110100_application_start.xml", "Application Activity", ["Application Start"], "E", 0),
    ("dicom_110101_audit_log_used.xml", "Audit Log Used", [], "R", 0),
    ("dicom_110103_instances_accessed.xml", "DICOM Instances Accessed", [], "R", 0),
    ("rfc3881_110103_instances_accessed.xml", "DICOM Instances Accessed", [], "R", 0),
    ("dicom_110106_export.xml", "Export", [], "R", 4),
    ("dicom_110110_patient_record.xml", "Patient Record", ["Patient Identity Feed"], "U", 0),
    ("dicom_110112_query.xml", "Query", [], "E", 0),
    ("rfc3881_110112_query.xml", "Query", [], "E", 0),
    ("dicom_110113_security_alert.xml", "Security Alert", ["Node Authentication"], "E", 4),
    ("dicom_110114_login.xml", "User Authentication", ["Login"], "E", 0),
    ("rfc3881_110114_logout.xml", "User Authentication", ["Logout"], "E", 0),
])
def test_every_sample_is_read_with_its_event_labels(name, event, types, action, outcome):
    message = parse_audit_message(sample(name))
    assert message.flavour == name.split("_")[0]
    assert message.event_id.meaning == event
    assert [t.meaning for t in message.event_types] == types
    assert (message.action, message.outcome) == (action, outcome)
    assert message.unknown_elements == ()
    assert message.xml == sample(name).decode()


def test_instances_accessed_names_who_looked_at_which_patient_and_study():
    message = parse_audit_message(sample("dicom_110103_instances_accessed.xml"))
    assert message.event_time == datetime(2025, 3, 14, 15, 31, 7, 250000, tzinfo=UTC)
    assert message.event_time_offset == timedelta(hours=-5)
    (requestor,) = message.requestors
    assert (requestor.user_id, requestor.alternative_user_id, requestor.user_name) == (
        "dr.lee", "VIEWER07", "Dr Lee")
    assert (requestor.network_access_point_id, requestor.network_access_point_type) == ("10.20.30.77", 2)
    archive = message.participants[1]
    assert archive.is_requestor is False
    assert archive.roles == (Code("110153", "DCM", "Source Role ID"),)
    (source,) = message.sources
    assert (source.source_id, source.enterprise_site_id) == ("ARCHIVE1", "Radiology")
    assert source.types[0].code == "4"
    (patient,) = message.patients
    assert (patient.object_id, patient.name) == (PATIENT_ID, PATIENT_NAME)
    (study,) = message.studies
    assert study.object_id == STUDY_UID
    assert message.study_uids == (STUDY_UID,)
    assert message.accession_numbers == (ACCESSION,)
    assert [(c.uid, c.instances) for c in study.sop_classes] == [
        ("1.2.840.10008.5.1.4.1.1.2", 212), ("1.2.840.10008.5.1.4.1.1.88.22", 1)]
    assert study.details == (("StudyDate", b"20250314"),)


def test_both_flavours_of_the_same_event_give_the_same_facts():
    dicom = parse_audit_message(sample("dicom_110103_instances_accessed.xml"))
    rfc = parse_audit_message(sample("rfc3881_110103_instances_accessed.xml"))
    assert (dicom.flavour, rfc.flavour) == ("dicom", "rfc3881")
    for field in ("event_time", "action", "outcome", "participants", "study_uids", "accession_numbers"):
        assert getattr(dicom, field) == getattr(rfc, field), field
    assert [(p.object_id, p.name) for p in rfc.patients] == [(PATIENT_ID, PATIENT_NAME)]
    assert [c.instances for c in rfc.studies[0].sop_classes] == [212, 1]


def test_export_reads_accession_from_object_detail_and_outcome_description():
    message = parse_audit_message(sample("dicom_110106_export.xml"))
    assert message.accession_numbers == (ACCESSION,)
    assert message.outcome_description == "2 of 214 instances could not be written"
    assert message.participants[1].roles[0].meaning == "Destination Media"


@pytest.mark.parametrize("name", ["dicom_110112_query.xml", "rfc3881_110112_query.xml"])
def test_query_is_decoded_into_its_c_find_keys(name):
    (queried,) = parse_audit_message(sample(name)).objects
    assert queried.id_type.meaning == "SOP Class UID"
    assert queried.query.dataset is True
    assert queried.query.key("PatientID") == "MRN-000417"
    assert queried.query.key("PatientName") == PATIENT_NAME
    assert queried.query.key("ModalitiesInStudy") == "CT\\MR"
    assert queried.query.key("QueryRetrieveLevel") == "STUDY"
    assert queried.query.key("StudyDescription") is None


def test_a_query_that_is_not_a_dataset_is_kept_as_text():
    text = "PatientID=MRN-000417&StudyDate=20250301-20250331"
    xml = sample("dicom_110112_query.xml").replace(
        b"CAAgAERBEgAyMDI1MDMwMS0yMDI1MDMzMSAIAFAAU0gAAAgAUgBDUwYAU1RVRFkgCABhAENTBgBDVFxNUiAQABAAUE4KAFR"
        b"FU1ReQUxJQ0UQACAATE8KAE1STi0wMDA0MTcgAA0AVUkAAA==", base64.b64encode(text.encode()))
    query = parse_audit_message(xml).objects[0].query
    assert (query.dataset, query.keys, query.text) == (False, (), text)


def test_sender_labels_are_kept_but_dcm_codes_show_their_standard_meaning():
    logout = parse_audit_message(sample("rfc3881_110114_logout.xml"))
    assert logout.event_id == Code("110114", "DCM", "UserAuthenticated")
    assert logout.event_id.meaning == "User Authentication"
    record = parse_audit_message(sample("dicom_110110_patient_record.xml"))
    assert record.event_types[0] == Code("ITI-8", "IHE Transactions", "Patient Identity Feed")


def test_namespace_bom_and_unknown_elements():
    xml = sample("dicom_110114_login.xml").decode().replace(
        "<AuditMessage>", '<a:AuditMessage xmlns:a="urn:example:audit" xmlns:v="urn:example:vendor">'
    ).replace("</AuditMessage>", "<v:Extra v:level=\"3\"/></a:AuditMessage>")
    xml = xml.replace("<EventID ", "<a:EventID ").replace("<ActiveParticipant ", "<a:ActiveParticipant ")
    message = parse_audit_message(b"\xef\xbb\xbf" + xml.encode())
    assert message.event_id.meaning == "User Authentication"
    assert [p.user_id for p in message.participants] == ["dr.lee", "VIEWER07"]
    assert message.unknown_elements == ("AuditMessage/Extra",)
    assert "<v:Extra" in message.xml


@pytest.mark.parametrize("encoding", ["ISO-8859-1", "windows-1252", "UTF-16", "Shift_JIS"])
def test_any_declared_encoding_is_read(encoding):
    text = sample("dicom_110103_instances_accessed.xml").decode().replace(
        'encoding="UTF-8"', f'encoding="{encoding}"').replace(PATIENT_NAME, "MÜLLER^JOSÉ")
    if encoding == "Shift_JIS":
        text = text.replace("MÜLLER^JOSÉ", "ヤマダ^タロウ")
    message = parse_audit_message(text.encode(encoding))
    assert message.patients[0].name == ("ヤマダ^タロウ" if encoding == "Shift_JIS" else "MÜLLER^JOSÉ")
    assert message.study_uids == (STUDY_UID,)


def test_utf16_without_declaration_is_read_from_its_bom():
    text = sample("dicom_110101_audit_log_used.xml").decode().split("?>", 1)[1]
    assert parse_audit_message(text.encode("utf-16")).objects[0].name == "Security Audit Log"


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol">
<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
<!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
<!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
<!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
<!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
<!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]><AuditMessage><EventIdentification EventDateTime="&lol9;"/></AuditMessage>"""
EXTERNAL_ENTITY = (b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                   b"<AuditMessage>&x;</AuditMessage>")
QUADRATIC = (b'<!DOCTYPE a [<!ENTITY a "' + b"x" * 20000 + b'">]><AuditMessage>'
             + b"&a;" * 10000 + b"</AuditMessage>")


@pytest.mark.timeout(10)
@pytest.mark.parametrize(("data", "reason"), [
    (BILLION_LAUGHS, QuarantineReason.FORBIDDEN_XML),
    (BILLION_LAUGHS.decode().encode("utf-16"), QuarantineReason.FORBIDDEN_XML),
    (EXTERNAL_ENTITY, QuarantineReason.FORBIDDEN_XML),
    (QUADRATIC, QuarantineReason.FORBIDDEN_XML),
    (b"<AuditMessage>&undefined;</AuditMessage>", QuarantineReason.NOT_XML),
    (b"GET / HTTP/1.1 patient MRN-000417", QuarantineReason.NOT_XML),
    (b"", QuarantineReason.NOT_XML),
    (b"<AuditMessage><EventIdentification>", QuarantineReason.NOT_XML),
    (b"<AuditMessage>\xff\xfe TEST^ALICE</AuditMessage>", QuarantineReason.BAD_ENCODING),
    (b'<?xml version="1.0" encoding="x-klingon"?><AuditMessage/>', QuarantineReason.BAD_ENCODING),
    (b"<html><body>TEST^ALICE</body></html>", QuarantineReason.NOT_AUDIT_MESSAGE),
    (b"<AuditMessage>" + b"<x>" * 5000 + b"</x>" * 5000 + b"</AuditMessage>",
     QuarantineReason.INVALID_FIELD),
])
def test_hostile_or_broken_documents_are_quarantined_without_quoting_them(data, reason):
    with pytest.raises(Quarantined) as caught:
        parse_audit_message(data)
    assert caught.value.reason is reason
    assert "TEST^ALICE" not in str(caught.value) and "MRN" not in str(caught.value)
    assert "passwd" not in str(caught.value)


def test_invalid_utf8_names_the_byte_offset():
    with pytest.raises(Quarantined, match=r"invalid utf-8 at byte 14"):
        parse_audit_message(b"<AuditMessage>\xc3\x28</AuditMessage>")


def test_a_10_megabyte_message_is_refused_by_size_before_parsing():
    huge = b"<AuditMessage>" + b" " * (10 * 1024 * 1024) + b"</AuditMessage>"
    with pytest.raises(Quarantined) as caught:
        parse_audit_message(huge)
    assert caught.value.reason is QuarantineReason.TOO_LARGE
    assert "65536 byte limit" in caught.value.detail


def _edit(name: str, old: str, new: str) -> bytes:
    """A sample with one piece of text replaced (it must be there)."""
    text = sample(name).decode()
    assert old in text
    return text.replace(old, new).encode()


@pytest.mark.parametrize(("old", "new", "field"), [
    ('EventActionCode="R"', 'EventActionCode="X"', "EventActionCode"),
    ('EventOutcomeIndicator="0"', 'EventOutcomeIndicator="3"', "EventOutcomeIndicator"),
    ('EventDateTime="2025-03-14T10:31:07.250-05:00"', 'EventDateTime="yesterday"', "EventDateTime"),
    ('<EventID csd-code="110103"', '<EventType csd-code="110103"', "EventID"),
    ('UserID="dr.lee"', 'UserID=" "', "ActiveParticipant 1: UserID"),
    ('UserIsRequestor="false"', 'UserIsRequestor="maybe"', "ActiveParticipant 2: UserIsRequestor"),
    ('AuditSourceID="ARCHIVE1"', 'AuditSourceID=""', "AuditSourceIdentification 1: AuditSourceID"),
    ('ParticipantObjectID="MRN-000417^^^HOSP"', 'ParticipantObjectID=""',
     "ParticipantObjectIdentification 2: ParticipantObjectID"),
    ('NumberOfInstances="212"', 'NumberOfInstances="many"',
     "ParticipantObjectIdentification 1: SOPClass NumberOfInstances"),
    ('csd-code="110180"', 'csd-code=""', "ParticipantObjectIdentification 1: ParticipantObjectIDTypeCode"),
])
def test_an_invalid_field_is_named(old, new, field):
    with pytest.raises(Quarantined) as caught:
        parse_audit_message(_edit("dicom_110103_instances_accessed.xml", old, new))
    assert caught.value.reason is QuarantineReason.INVALID_FIELD
    assert caught.value.detail.startswith(field)
