"""Listing studies from a real Orthanc whose answers are capped at 5 matches (LimitFindResults)."""

from __future__ import annotations

import json
import time
from datetime import date

import pytest

from inventory.studies.dimse import STUDY_ROOT_FIND, Archive, ArchiveTimeout, ArchiveUnreachable, connect
from inventory.studies.query import (
    WalkInterrupted,
    Window,
    find_undated_studies,
    study_exists,
    walk_studies,
)
from inventory.studies.records import study_identifier
from tests.helpers import OVERRUN
from tests.inventory.studies.archive_support import StudySpec, da
from tests.inventory.studies.conftest import TODAY, generated_studies

pytestmark = pytest.mark.integration

START, END = date(1990, 1, 1), date(2026, 5, 31)


def test_one_unpaged_query_is_cut_at_the_limit_and_says_so(filled_archive):
    with connect(filled_archive.server.archive(limit=None), [STUDY_ROOT_FIND]) as connection:
        answer = connection.find(study_identifier())
    assert len(answer.matches) == 5
    assert answer.status == 0xFE00
    assert answer.truncated


def test_many_c_finds_on_one_association_each_get_every_response(filled_archive):
    # pynetdicom's reactor thread used to take an answer's first response now and then.
    with connect(filled_archive.server.archive(), [STUDY_ROOT_FIND]) as connection:
        counts = [len(connection.find(study_identifier("20180301-20180302")).matches) for _ in range(400)]
    assert counts == [2] * 400


def test_walk_finds_every_study_although_each_answer_holds_at_most_five(filled_archive):
    progress: list[float] = []
    result = walk_studies(filled_archive.server.archive(), START, END, today=TODAY,
                          on_progress=progress.append)
    found = {s.study_uid: s for s in result.studies}
    expected = set(filled_archive.dated) | set(filled_archive.malformed)
    assert set(found) == expected
    assert len(result.studies) == len(found), "a study seen in two windows is listed once"
    assert result.complete and not result.incomplete
    assert result.queries > len(expected) / 5
    for uid, spec in filled_archive.dated.items():
        assert da(found[uid].study_date) == spec.study_date
        assert found[uid].patient_id == spec.patient_id
        assert found[uid].instance_count == spec.series * spec.instances
    assert progress == sorted(progress) and progress[-1] == pytest.approx(1.0)


def test_walk_splits_a_day_with_more_studies_than_the_limit_by_study_time(filled_archive):
    result = walk_studies(filled_archive.server.archive(), START, END, today=TODAY)
    busy = [s for s in result.studies if s.study_date == filled_archive.busy_day]
    assert len(busy) == 8
    assert any(w.start <= filled_archive.busy_day <= w.end for w in result.split_by_time)
    assert any(w.timed for w in result.windows)


def test_malformed_values_become_problems_on_the_study_not_errors(filled_archive):
    result = walk_studies(filled_archive.server.archive(), START, END, today=TODAY)
    found = {s.study_uid: s for s in result.studies}
    reasons = {}
    for uid, spec in filled_archive.malformed.items():
        study = found[uid]
        if spec.patient_id == "BADUID":
            assert study.study_date == date(2015, 5, 5)
            reasons["uid"] = str(study.problem("StudyInstanceUID"))
            continue
        assert study.study_date is None
        problem = study.problem("StudyDate")
        assert problem is not None and problem.value == spec.study_date
        reasons[spec.study_date] = problem.reason
    assert reasons == {
        "20250230": "not a calendar date in the form YYYYMMDD",
        "19000000": "not a calendar date in the form YYYYMMDD",
        "": "no value",
        "2025010": "not a calendar date in the form YYYYMMDD",
        "20990101": "in the future",
        "uid": "StudyInstanceUID: not a DICOM UID (digits and dots, no spaces or leading zeros)",
    }
    future_birth = next(s for s in result.studies if s.patient_id == "FUTUREBIRTH")
    assert future_birth.birth_date is None
    assert str(future_birth.problem("PatientBirthDate")) == "PatientBirthDate: in the future"


def test_undated_query_on_a_full_archive_says_its_answer_is_incomplete(filled_archive):
    answer = find_undated_studies(filled_archive.server.archive(), today=TODAY)
    assert not answer.complete
    assert all(s.study_date is None for s in answer.studies)


def test_undated_studies_are_found_when_the_archive_answers_whole(orthanc):
    server = orthanc(limit=10)
    undated = StudySpec("1.2.826.0.1.3680043.10.1", None, "NODATE")
    empty = StudySpec("1.2.826.0.1.3680043.10.2", "", "EMPTY")
    dated = StudySpec("1.2.826.0.1.3680043.10.3", "20200101", "DATED")
    server.store(ds for spec in (undated, empty, dated) for ds in spec.datasets())
    answer = find_undated_studies(server.archive(), today=TODAY)
    assert answer.complete
    assert {s.study_uid for s in answer.studies} == {undated.study_uid, empty.study_uid}


def test_study_exists_answers_from_the_archive(filled_archive):
    archive = filled_archive.server.archive()
    assert study_exists(archive, next(iter(filled_archive.dated)))
    assert not study_exists(archive, "1.2.826.0.1.3680043.99.99")


def test_study_exists_refuses_a_wildcard_uid(filled_archive):
    with pytest.raises(ValueError, match="wildcard"):
        study_exists(filled_archive.server.archive(), "1.2.*")


def test_a_day_with_more_studies_at_one_second_than_the_limit_is_reported_incomplete(orthanc):
    server = orthanc(limit=5)
    same_instant = [StudySpec(f"1.2.826.0.1.3680043.11.{n}", "20210304", f"P{n}", study_time="101010")
                    for n in range(6)]
    server.store(ds for spec in same_instant for ds in spec.datasets())
    result = walk_studies(server.archive(), date(2021, 1, 1), date(2021, 12, 31), today=TODAY)
    assert not result.complete
    assert result.incomplete
    assert all(w.timed and w.start <= date(2021, 3, 4) <= w.end for w in result.incomplete)
    assert not set(result.incomplete) & set(result.windows), "a resumed walk asks them again"
    assert 5 <= len(result.studies) <= 6


def test_walk_stopped_half_way_by_a_frozen_archive_resumes_where_it_stopped(orthanc):
    server = orthanc(limit=5)
    truth = generated_studies(30, seed=7)
    server.store(ds for spec in truth for ds in spec.datasets())
    full = walk_studies(server.archive(), START, END, today=TODAY)
    assert {s.study_uid for s in full.studies} == {s.study_uid for s in truth}

    answered: list[Window] = []
    stopped_at: list[float] = []

    def freeze_after_three(window: Window, studies: tuple) -> None:
        answered.append(window)
        if len(answered) == 3:
            server.pause()
            stopped_at.append(time.monotonic())

    with pytest.raises(WalkInterrupted) as caught:
        walk_studies(server.archive(timeout=3.0), START, END, today=TODAY, on_window=freeze_after_three)
    interrupted = caught.value
    assert time.monotonic() - stopped_at[0] < 3.0 + OVERRUN  # the response timeout, plus slack
    assert isinstance(interrupted.cause, ArchiveTimeout)
    assert interrupted.windows == tuple(answered)
    assert 0 < interrupted.fraction < 1

    server.resume()
    stored = json.loads(json.dumps([w.to_dict() for w in interrupted.windows]))  # as a job keeps them
    asked_again: list[Window] = []
    rest = walk_studies(server.archive(), START, END, today=TODAY,
                        done=[Window.from_dict(w) for w in stored],
                        on_window=lambda window, studies: asked_again.append(window))
    assert not set(asked_again) & set(interrupted.windows)
    assert rest.queries < full.queries
    found = {s.study_uid for s in interrupted.partial.studies} | {s.study_uid for s in rest.studies}
    assert found == {s.study_uid for s in truth}
    assert set(rest.windows) >= set(interrupted.windows)


def test_walk_against_a_closed_port_is_interrupted_before_any_window(closed_port):
    archive = Archive("127.0.0.1", closed_port, "NOBODY", timeout=1.0)
    with pytest.raises(WalkInterrupted) as caught:
        walk_studies(archive, START, END)
    assert isinstance(caught.value.cause, ArchiveUnreachable)
    assert caught.value.windows == ()
    assert caught.value.fraction == 0


def test_done_windows_from_another_range_are_refused(filled_archive):
    with pytest.raises(ValueError, match="outside the walked range"):
        walk_studies(filled_archive.server.archive(), date(2000, 1, 1), date(2001, 1, 1),
                     done=[Window(date(1990, 1, 1), date(1999, 1, 1))])
