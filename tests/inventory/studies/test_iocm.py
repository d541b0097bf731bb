"""IOCM rejection notes: the instance list from a real Orthanc, the note, and its C-STORE to a real SCP."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    CTImageStorage,
    KeyObjectSelectionDocumentStorage,
    StudyRootQueryRetrieveInformationModelFind,
)

from inventory.studies.dimse import (
    STUDY_ROOT_FIND,
    Archive,
    IncompleteAnswer,
    OperationFailed,
    ServiceNotAccepted,
    connect,
)
from inventory.studies.iocm import (
    InstanceRef,
    SeriesRef,
    StudyContents,
    StudyNotFound,
    build_rejection_note,
    list_study_instances,
    send_rejection_note,
)
from tests.helpers import ANSWER_TIMEOUT

STORE_AET = "REJECTSCP"

CONTENTS = StudyContents(
    "1.2.826.0.1.3680043.20.1", "PAT", "DOE^JANE", "20250230", "F", "19000000", "25:99", "ACC",
    (SeriesRef("1.2.826.0.1.3680043.20.2", "CT",
               (InstanceRef(str(CTImageStorage), "1.2.826.0.1.3680043.20.3"),)),))


def listed(contents: StudyContents) -> set[tuple[str, str, str]]:
    """(series UID, SOP class, SOP instance) of every instance in ``contents``."""
    return {(s.series_uid, i.sop_class_uid, i.sop_instance_uid) for s in contents.series for i in s.instances}


def scp(port: int) -> Archive:
    """The in-process Storage SCP as an archive."""
    return Archive("127.0.0.1", port, STORE_AET, timeout=ANSWER_TIMEOUT)


@pytest.fixture
def storage_scp() -> Iterator[Callable[..., tuple[int, list[Dataset]]]]:
    """Start pynetdicom Storage SCPs: ``port, received = storage_scp(status=0, sop_class=KOS)``."""
    servers = []

    def start(status: int = 0x0000, sop_class: str = KeyObjectSelectionDocumentStorage) -> tuple[int, list]:
        received: list[Dataset] = []

        def on_store(event: evt.Event) -> int:
            ds = event.dataset
            ds.file_meta = event.file_meta
            received.append(ds)
            return status

        ae = AE(ae_title=STORE_AET)
        ae.add_supported_context(sop_class)
        server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)])
        assert server is not None
        servers.append(server)
        return server.server_address[1], received

    yield start
    for server in servers:
        server.shutdown()


def stored_instances(archive: Archive, study_uid: str) -> set[tuple[str, str, str]]:
    """(series UID, SOP class, SOP instance) of every instance, asked series by series of the archive."""
    found = set()
    with connect(archive, [STUDY_ROOT_FIND]) as connection:
        series = Dataset()
        series.QueryRetrieveLevel, series.StudyInstanceUID, series.SeriesInstanceUID = "SERIES", study_uid, ""
        for item in connection.find(series, str(StudyRootQueryRetrieveInformationModelFind)).matches:
            image = Dataset()
            image.QueryRetrieveLevel, image.StudyInstanceUID = "IMAGE", study_uid
            image.SeriesInstanceUID, image.SOPInstanceUID, image.SOPClassUID = item.SeriesInstanceUID, "", ""
            for match in connection.find(image).matches:
                found.add((str(item.SeriesInstanceUID), str(match.SOPClassUID), str(match.SOPInstanceUID)))
    return found


@pytest.mark.integration
def test_the_instance_list_holds_every_series_and_instance_of_the_study(filled_archive):
    archive = filled_archive.server.archive()
    spec = filled_archive.multi_series
    contents = list_study_instances(archive, spec.study_uid)
    assert contents.study_uid == spec.study_uid and contents.patient_id == spec.patient_id
    assert contents.patient_name == "TEST^PATIENT" and contents.study_date == spec.study_date
    assert len(contents.series) == 2 and contents.instance_count == 6
    assert listed(contents) == stored_instances(archive, spec.study_uid)


@pytest.mark.integration
def test_a_series_cut_at_the_archives_instance_limit_is_an_error_not_a_short_list(filled_archive):
    with pytest.raises(IncompleteAnswer, match="raise its query limit"):
        list_study_instances(filled_archive.server.archive(), filled_archive.big_series.study_uid)


@pytest.mark.integration
def test_more_instances_than_the_bound_is_an_error(filled_archive):
    with pytest.raises(IncompleteAnswer, match="more than 4 instances"):
        list_study_instances(filled_archive.server.archive(), filled_archive.multi_series.study_uid,
                             max_instances=4)


@pytest.mark.integration
def test_an_unknown_study_is_not_found(filled_archive):
    with pytest.raises(StudyNotFound):
        list_study_instances(filled_archive.server.archive(), "1.2.826.0.1.3680043.19.404")


@pytest.mark.integration
def test_the_rejection_note_sent_is_titled_retention_expired_and_references_every_instance(
        filled_archive, storage_scp):
    spec = filled_archive.multi_series
    contents = list_study_instances(filled_archive.server.archive(), spec.study_uid)
    note = build_rejection_note(contents, description="Retention period expired",
                                now=datetime(2026, 6, 1, 9, 30))
    port, received = storage_scp()
    send_rejection_note(scp(port), note)

    assert len(received) == 1
    got = received[0]
    assert got.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.59" and got.Modality == "KO"
    title = got.ConceptNameCodeSequence[0]
    assert (title.CodeValue, title.CodingSchemeDesignator, title.CodeMeaning) == \
        ("113039", "DCM", "Data Retention Policy Expired")
    assert got.StudyInstanceUID == spec.study_uid and got.PatientID == spec.patient_id
    assert got.SeriesInstanceUID not in {s.series_uid for s in contents.series}
    assert got.ContentDate == "20260601" and got.ContentTemplateSequence[0].TemplateIdentifier == "2010"

    expected = listed(contents)
    evidence = got.CurrentRequestedProcedureEvidenceSequence
    assert [item.StudyInstanceUID for item in evidence] == [spec.study_uid]
    referenced = {(str(series.SeriesInstanceUID), str(ref.ReferencedSOPClassUID),
                   str(ref.ReferencedSOPInstanceUID))
                  for series in evidence[0].ReferencedSeriesSequence for ref in series.ReferencedSOPSequence}
    assert referenced == expected
    items = got.ContentSequence
    assert items[0].ValueType == "TEXT" and items[0].TextValue == "Retention period expired"
    in_content = {(str(i.ReferencedSOPSequence[0].ReferencedSOPClassUID),
                   str(i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID)) for i in items[1:]}
    assert in_content == {(c, i) for _s, c, i in expected}
    assert {i.ValueType for i in items[1:]} == {"IMAGE"}
    assert {i.RelationshipType for i in items} == {"CONTAINS"}


def test_an_archive_refusing_the_note_is_an_error_with_its_status(storage_scp):
    port, _received = storage_scp(status=0xA700)
    with pytest.raises(OperationFailed, match="0xA700") as caught:
        send_rejection_note(scp(port), build_rejection_note(CONTENTS))
    assert caught.value.status == 0xA700


def test_an_archive_that_does_not_take_key_object_selection_documents_is_told_apart(storage_scp):
    port, _received = storage_scp(sop_class=CTImageStorage)
    with pytest.raises(ServiceNotAccepted):
        send_rejection_note(scp(port), build_rejection_note(CONTENTS))


def test_malformed_stored_dates_are_left_empty_in_the_note():
    note = build_rejection_note(CONTENTS)
    assert (note.PatientBirthDate, note.StudyDate, note.StudyTime) == ("", "", "")
    assert note.PatientName == "DOE^JANE" and note.AccessionNumber == "ACC"


@pytest.mark.parametrize(("contents", "field"), [
    (replace(CONTENTS, series=()), "contents: "),
    (replace(CONTENTS, study_uid="1.2.3 4"), "contents.study_uid: "),
])
def test_a_note_that_would_reference_nothing_or_a_bad_uid_is_refused(contents, field):
    with pytest.raises(ValueError, match=field):
        build_rejection_note(contents)
