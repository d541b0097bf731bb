"""Executing a review on an IOCM archive: a pynetdicom archive answering C-FIND and taking rejection notes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    KeyObjectSelectionDocumentStorage,
    StudyRootQueryRetrieveInformationModelFind,
)

from core.extensions import db
from inventory.studies.execution import request_execution
from inventory.studies.models import ItemOutcome, ReviewStatus
from inventory.studies.records import put, raw_text
from inventory.studies.review import approve_review, start_review
from tests.inventory.studies.archive_support import StudySpec, da
from tests.inventory.studies.review_support import (
    REVIEW_JOBS,
    add_archive,
    hold,
    outcomes,
    review_row,
    user_named,
)

pytestmark = pytest.mark.integration

AET = "IOCMARCH"
U = "1.2.826.0.1.3680043.10.545."
OLD = StudySpec(U + "1", da(date(2011, 4, 2)), "PAT-OLD-1", series=2, instances=2)
HELD = StudySpec(U + "2", da(date(2010, 4, 2)), "PAT-HELD-2")
NEW = StudySpec(U + "3", da(date(2025, 4, 2)), "PAT-NEW-3")
SPACED_UID = StudySpec(U + "4 1", da(date(2001, 4, 2)), "PAT-SPACE-4")  # old, but its UID is not a UID


def _answer(level: str, row: Dataset, keywords: tuple[str, ...]) -> Dataset:
    """A series- or image-level match: the level and ``keywords`` copied from the stored instance."""
    answer = Dataset()
    put(answer, "QueryRetrieveLevel", level)
    for keyword in keywords:
        put(answer, keyword, raw_text(row, keyword))
    return answer


class IocmArchive:
    """An archive that answers study, series and image C-FINDs and rejects what a KOS note references."""

    def __init__(self, studies: list[StudySpec]) -> None:
        self.instances = [ds for study in studies for ds in study.datasets()]
        self.notes: list[Dataset] = []

    def _study_answer(self, query: Dataset, rows: list[Dataset]) -> Dataset:
        """A study-level match with the keys asked for."""
        answer = Dataset()
        for element in query:
            keyword = element.keyword
            if keyword == "ModalitiesInStudy":
                put(answer, keyword, "\\".join(sorted({raw_text(r, "Modality") or "" for r in rows})))
            elif keyword == "NumberOfStudyRelatedInstances":
                put(answer, keyword, str(len(rows)))
            elif keyword == "QueryRetrieveLevel":
                put(answer, keyword, "STUDY")
            else:
                put(answer, keyword, raw_text(rows[0], keyword) or "")
        return answer

    def on_find(self, event: evt.Event) -> Iterator[tuple[int, Dataset | None]]:
        """Match by UID and patient ID (dates: every window the walk asks for first is universal)."""
        query = event.identifier
        level = raw_text(query, "QueryRetrieveLevel")
        wanted = {k: raw_text(query, k) for k in ("StudyInstanceUID", "PatientID", "SeriesInstanceUID")}
        rows = [ds for ds in self.instances
                if all(not value or raw_text(ds, key) == value for key, value in wanted.items())]
        if level == "STUDY":
            for uid in dict.fromkeys(raw_text(r, "StudyInstanceUID") for r in rows):
                study = [r for r in rows if raw_text(r, "StudyInstanceUID") == uid]
                yield 0xFF00, self._study_answer(query, study)
        elif level == "SERIES":
            for uid in dict.fromkeys(raw_text(r, "SeriesInstanceUID") for r in rows):
                first = next(r for r in rows if raw_text(r, "SeriesInstanceUID") == uid)
                yield 0xFF00, _answer("SERIES", first, ("StudyInstanceUID", "SeriesInstanceUID", "Modality"))
        else:
            for row in rows:
                yield 0xFF00, _answer("IMAGE", row, ("StudyInstanceUID", "SeriesInstanceUID",
                                                     "SOPInstanceUID", "SOPClassUID"))
        yield 0x0000, None

    def on_store(self, event: evt.Event) -> int:
        """Keep the note and reject (remove) every instance it references."""
        note = event.dataset
        self.notes.append(note)
        rejected = {str(ref.ReferencedSOPInstanceUID)
                    for evidence in note.CurrentRequestedProcedureEvidenceSequence
                    for series in evidence.ReferencedSeriesSequence for ref in series.ReferencedSOPSequence}
        self.instances = [ds for ds in self.instances if raw_text(ds, "SOPInstanceUID") not in rejected]
        return 0x0000


@pytest.fixture
def iocm_archive() -> Iterator[tuple[int, IocmArchive]]:
    """The archive on a free loopback port."""
    archive = IocmArchive([OLD, HELD, NEW, SPACED_UID])
    ae = AE(ae_title=AET)
    ae.add_supported_context(StudyRootQueryRetrieveInformationModelFind)
    ae.add_supported_context(KeyObjectSelectionDocumentStorage)
    server = ae.start_server(("127.0.0.1", 0), block=False,
                             evt_handlers=[(evt.EVT_C_FIND, archive.on_find),
                                           (evt.EVT_C_STORE, archive.on_store)])
    yield server.server_address[1], archive
    server.shutdown()


def test_execution_sends_one_rejection_note_per_study_titled_retention_expired_with_every_instance(
        app, run_jobs, make_user, iocm_archive):
    port, archive = iocm_archive
    make_user("technician", "tim")
    make_user("compliance", "carol")
    stored = {raw_text(ds, "SOPInstanceUID") for ds in archive.instances
              if raw_text(ds, "StudyInstanceUID") == OLD.study_uid}
    asset_id = add_archive(app, port, ae_title=AET, method="iocm")
    hold(app, "carol", "patient", HELD.patient_id)
    with app.app_context():
        review_id = start_review(asset_id, user_named(app, "tim")).id
        db.session.commit()
    run_jobs(REVIEW_JOBS)
    with app.app_context():
        approve_review(review_id, user_named(app, "carol"))
        db.session.commit()
        request_execution(review_id, user_named(app, "tim"))
        db.session.commit()
    run_jobs(REVIEW_JOBS)

    row = review_row(app, review_id)
    assert row.status is ReviewStatus.DONE and row.studies_seen == 4
    assert row.flagged == {"bad_study_uid": 1}, "listed as needing a look, never as past retention"
    assert outcomes(app, review_id) == {OLD.study_uid: ItemOutcome.DESTROYED}
    assert len(archive.notes) == 1
    note = archive.notes[0]
    title = note.ConceptNameCodeSequence[0]
    assert (title.CodeValue, title.CodingSchemeDesignator, title.CodeMeaning) == \
        ("113039", "DCM", "Data Retention Policy Expired")
    assert note.StudyInstanceUID == OLD.study_uid and note.PatientID == OLD.patient_id
    evidence = note.CurrentRequestedProcedureEvidenceSequence[0]
    assert evidence.StudyInstanceUID == OLD.study_uid
    referenced = {str(ref.ReferencedSOPInstanceUID) for series in evidence.ReferencedSeriesSequence
                  for ref in series.ReferencedSOPSequence}
    assert referenced == stored and len(referenced) == 4
    remaining = {raw_text(ds, "StudyInstanceUID") for ds in archive.instances}
    assert remaining == {HELD.study_uid, NEW.study_uid, SPACED_UID.study_uid}
