"""C-FIND against in-process pynetdicom archives and misbehaving sockets: every failure told apart."""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from datetime import date
from itertools import pairwise
from typing import Any

import pytest
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag
from pynetdicom import AE, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
    Verification,
)

from inventory.studies.dimse import (
    Archive,
    ArchiveAborted,
    ArchiveTimeout,
    ArchiveUnreachable,
    AssociationRejected,
    OperationFailed,
    ServiceNotAccepted,
)
from inventory.studies.query import WalkInterrupted, study_exists, walk_studies
from tests.helpers import ANSWER_TIMEOUT, OVERRUN
from tests.inventory.conftest import close_after_request, stay_silent

AET = "FINDSCP"
TIMEOUT = ANSWER_TIMEOUT  # archives that answer
SHORT = 1.0  # archives that must time out
PHI = ("SECRET-PATIENT-42", "1.2.3 4.5", "ACC-SECRET", "20250230")


def match(uid: str, day: str, **values: str) -> Dataset:
    """A study-level answer whose values go on the wire exactly as given (malformed ones too)."""
    ds = Dataset()
    fields = {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": uid, "StudyDate": day,
              "PatientID": "PAT", "ModalitiesInStudy": "CT", "NumberOfStudyRelatedInstances": "1",
              **values}
    for keyword, value in fields.items():
        tag = Tag(keyword)
        raw = value.encode("latin-1")
        raw += (b"\0" if dictionary_VR(tag) == "UI" else b" ") * (len(raw) % 2)
        ds[tag] = RawDataElement(tag, dictionary_VR(tag), len(raw), raw, 0, True, True)
    ds.set_original_encoding(True, True, "iso8859")  # so the peer writes the bytes, never parses them
    return ds


@pytest.fixture
def find_scp() -> Iterator[Callable[..., int]]:
    """Start pynetdicom Study Root Find SCPs: ``port = find_scp(handler, contexts=...)``."""
    servers = []

    def start(handler: Callable | None = None, *, find: bool = True, require_called_aet: bool = True) -> int:
        ae = AE(ae_title=AET)
        ae.add_supported_context(StudyRootQueryRetrieveInformationModelFind if find else Verification)
        ae.require_called_aet = require_called_aet
        handlers: list[Any] = [(evt.EVT_C_FIND, handler)] if handler else []
        server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=handlers)
        assert server is not None
        servers.append(server)
        return server.server_address[1]

    yield start
    for server in servers:
        server.shutdown()


def archive(port: int, timeout: float = TIMEOUT, **options: object) -> Archive:
    """The in-process peer as an archive."""
    return Archive("127.0.0.1", port, AET, "PACSDESK", timeout, **options)  # type: ignore[arg-type]


def serve(studies: list[Dataset], limit: int | None = None, refuse: bool = False) -> Callable:
    """A C-FIND handler over ``studies`` matching StudyDate as text; over ``limit`` it cuts or refuses."""
    def handler(event: evt.Event) -> Iterator[tuple[int, Dataset | None]]:
        key = str(event.identifier.get("StudyDate", "") or "")
        low, _, high = key.partition("-") if "-" in key else (key, "", key)
        found = [s for s in studies if not key or (low or "") <= str(s.StudyDate) <= (high or "~")]
        if limit is not None and len(found) > limit:
            if refuse:
                yield 0xA700, None
                return
            for item in found[:limit]:
                yield 0xFF00, item
            yield 0xFE00, None
            return
        for item in found:
            yield 0xFF00, item
        yield 0x0000, None
    return handler


def test_malformed_values_on_the_wire_become_problems_and_nothing_names_the_patient(find_scp, caplog):
    answers = [match("1.2.3 4.5", "20250230", PatientID="SECRET-PATIENT-42", AccessionNumber="ACC-SECRET",
                     PatientBirthDate="21000101", NumberOfStudyRelatedInstances="many", PatientSex="X"),
               match("1.2.826.0.1.3680043.14.1", "20200101", PatientBirthDate="19800101")]
    port = find_scp(serve(answers))
    caplog.set_level(logging.DEBUG)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = walk_studies(archive(port), date(2019, 1, 1), date(2021, 1, 1), today=date(2026, 1, 1))
    bad = next(s for s in result.studies if s.patient_id == "SECRET-PATIENT-42")
    assert {p.field: p.reason for p in bad.problems} == {
        "StudyInstanceUID": "not a DICOM UID (digits and dots, no spaces or leading zeros)",
        "StudyDate": "not a calendar date in the form YYYYMMDD",
        "PatientBirthDate": "in the future",
        "PatientSex": "not M, F or O",
        "NumberOfStudyRelatedInstances": "not a whole number",
    }
    assert bad.study_uid == "1.2.3 4.5" and bad.study_date is None and bad.birth_date is None
    assert bad.accession_number == "ACC-SECRET" and bad.instance_count is None
    good = next(s for s in result.studies if s.study_uid == "1.2.826.0.1.3680043.14.1")
    assert good.problems == () and good.birth_date == date(1980, 1, 1)
    said = caplog.text + " ".join(str(w.message) for w in caught) + " ".join(str(p) for p in bad.problems)
    assert not [value for value in PHI if value in said]


def test_a_cut_answer_is_split_until_every_study_is_found(find_scp):
    studies = [match(f"1.2.826.0.1.3680043.15.{n}", f"2020{1 + n % 12:02d}{1 + n % 28:02d}")
               for n in range(40)]
    port = find_scp(serve(studies, limit=4))
    result = walk_studies(archive(port, find_limit=None), date(2020, 1, 1), date(2020, 12, 31))
    assert {s.study_uid for s in result.studies} == {str(s.StudyInstanceUID) for s in studies}
    assert result.complete
    chain = [w for w in result.windows if not w.timed]
    assert chain[0].open_start and chain[0].start == date(2020, 1, 1)
    assert chain[-1].open_end and chain[-1].end == date(2020, 12, 31)
    assert all(after.start == before.end for before, after in pairwise(chain)), \
        "each window starts on the day the previous one ended: no date value falls between two"


def test_an_archive_that_refuses_oversized_queries_is_walked_by_splitting(find_scp):
    studies = [match(f"1.2.826.0.1.3680043.16.{n}", f"2021{1 + n % 12:02d}10") for n in range(24)]
    port = find_scp(serve(studies, limit=3, refuse=True))
    result = walk_studies(archive(port), date(2021, 1, 1), date(2021, 12, 31))
    assert len(result.studies) == 24 and result.complete


def test_an_archive_refusing_every_query_stops_the_walk_instead_of_splitting_forever(find_scp):
    port = find_scp(lambda event: iter([(0xA700, None)]))
    with pytest.raises(WalkInterrupted) as caught:
        walk_studies(archive(port), date(2000, 1, 1), date(2021, 12, 31))
    assert isinstance(caught.value.cause, OperationFailed)
    assert caught.value.cause.status == 0xA700
    assert caught.value.partial.queries < 60


def test_a_failure_status_is_an_error_with_its_code(find_scp):
    port = find_scp(lambda event: iter([(0xC001, None)]))
    with pytest.raises(OperationFailed, match="0xC001") as caught:
        study_exists(archive(port), "1.2.826.0.1.3680043.17.1")
    assert caught.value.status == 0xC001


def test_an_archive_that_stops_answering_mid_answer_times_out(find_scp):
    release = threading.Event()

    def slow(event: evt.Event) -> Iterator[tuple[int, Dataset | None]]:
        yield 0xFF00, match("1.2.826.0.1.3680043.18.1", "20200101")
        release.wait(30)
        yield 0x0000, None

    port = find_scp(slow)
    started = time.monotonic()
    try:
        with pytest.raises(ArchiveTimeout, match=r"no C-FIND response within 1\.0 s"):
            study_exists(archive(port, SHORT), "1.2.826.0.1.3680043.18.1")
        assert time.monotonic() - started < SHORT + OVERRUN
    finally:
        release.set()


def test_wrong_called_ae_title_is_a_permanent_rejection(find_scp):
    port = find_scp(serve([]))
    wrong = Archive("127.0.0.1", port, "NOT-THE-ARCHIVE", timeout=TIMEOUT)
    with pytest.raises(AssociationRejected, match="called AE title not recognised") as caught:
        study_exists(wrong, "1.2.3")
    assert (caught.value.result, caught.value.reason) == (1, 7) and not caught.value.transient


def test_an_archive_without_study_root_find_is_told_apart(find_scp):
    port = find_scp(find=False)
    with pytest.raises(ServiceNotAccepted, match=r"1\.2\.840\.10008\.5\.1\.4\.1\.2\.2\.1"):
        study_exists(archive(port), "1.2.3")


def test_closed_port_is_unreachable(closed_port):
    with pytest.raises(ArchiveUnreachable, match="no TCP connection"):
        study_exists(archive(closed_port), "1.2.3")


def test_a_silent_socket_times_out_on_the_association(raw_peer):
    port = raw_peer(stay_silent)
    started = time.monotonic()
    with pytest.raises(ArchiveTimeout, match="did not answer the association request"):
        study_exists(archive(port, SHORT), "1.2.3")
    assert time.monotonic() - started < SHORT + OVERRUN


def test_a_peer_hanging_up_on_the_association_request_is_aborted(raw_peer):
    port = raw_peer(close_after_request)
    with pytest.raises(ArchiveAborted):
        study_exists(archive(port), "1.2.3")


@pytest.mark.parametrize(("options", "field"), [
    ({"port": 0}, "port"), ({"called_ae": "A" * 17}, "called AE title"), ({"timeout": 0}, "timeout"),
    ({"find_limit": 0}, "find_limit"), ({"host": "two words"}, "host"),
])
def test_an_archive_that_cannot_work_is_refused_naming_the_field(options, field):
    values = {"host": "127.0.0.1", "port": 104, "called_ae": "PACS", **options}
    with pytest.raises(ValueError, match=field):
        Archive(**values)  # type: ignore[arg-type]
