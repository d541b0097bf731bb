"""Study reviews against a real Orthanc: listing by paged C-FIND, holds, two people, deletion, expiry."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta

import pytest

from core.extensions import db
from core.jobs.models import Job, JobStatus
from inventory.studies.dimse import STUDY_ROOT_FIND, connect
from inventory.studies.execution import request_execution
from inventory.studies.models import ItemOutcome, ReviewStatus
from inventory.studies.query import WalkInterrupted, study_exists
from inventory.studies.records import study_identifier
from inventory.studies.review import approve_review, run_listing, start_review
from inventory.studies.services import StudyError
from tests.inventory.studies.archive_support import StudySpec
from tests.inventory.studies.review_support import (
    REVIEW_JOBS,
    add_archive,
    hold,
    outcomes,
    review_items,
    review_row,
    spec,
    user_named,
)

pytestmark = pytest.mark.integration

U = "1.2.826.0.1.3680043.10.543."
OLD_CT = spec(U + "1", date(2010, 3, 1), "PAT-A-0001")
RECENT_CT = spec(U + "2", date(2024, 5, 1), "PAT-A-0001")
MINOR_RECENT = spec(U + "3", date(2015, 6, 1), "PAT-M-0003", birth="20100101")
MINOR_OLD = spec(U + "4", date(1999, 1, 1), "PAT-N-0004", birth="19900601")
MG_EARLY = spec(U + "5", date(2012, 1, 1), "PAT-G-0005", modality="MG")
MG_LATER = spec(U + "6", date(2020, 1, 1), "PAT-G-0005", modality="MG")
MG_ALONE = spec(U + "7", date(2012, 2, 1), "PAT-H-0007", modality="MG")
NO_BIRTH = spec(U + "8", date(2009, 1, 1), "PAT-X-0008", birth="")
HELD_PATIENT = spec(U + "9", date(2008, 1, 1), "PAT-HOLD-09")
HELD_ACCESSION = spec(U + "10", date(2008, 2, 1), "PAT-Q-0010", accession="ACC-HOLD")
HELD_DATES = spec(U + "11", date(2005, 7, 15), "PAT-R-0011")
BAD_DATE = StudySpec(U + "12", "20250230", "PAT-B-0012")
ARCHIVE = [OLD_CT, RECENT_CT, MINOR_RECENT, MINOR_OLD, MG_EARLY, MG_LATER, MG_ALONE, NO_BIRTH, HELD_PATIENT,
           HELD_ACCESSION, HELD_DATES, BAD_DATE]
EXPIRED = {OLD_CT.study_uid, MINOR_OLD.study_uid, MG_ALONE.study_uid, NO_BIRTH.study_uid}
SPARED = {HELD_PATIENT.study_uid, HELD_ACCESSION.study_uid, HELD_DATES.study_uid}


@pytest.fixture
def staff(make_user):
    """A technician, two compliance officers and an administrator."""
    for role, name in (("technician", "tim"), ("compliance", "carol"), ("compliance", "dana"),
                       ("admin", "ada")):
        make_user(role, name)


@pytest.fixture
def archive(app, orthanc, staff, tmp_path):
    """An Orthanc answering at most 3 studies a C-FIND, filled with ARCHIVE, its node and three holds."""
    server = orthanc(limit=3)
    server.store(ds for s in ARCHIVE for ds in s.datasets())
    asset_id = add_archive(app, server.port, method="orthanc_rest", server=server, folder=tmp_path,
                           find_limit=3)
    hold(app, "carol", "patient", HELD_PATIENT.patient_id)
    hold(app, "carol", "accession", "ACC-HOLD")
    hold(app, "carol", "study_dates", start=datetime(2005, 7, 1, tzinfo=UTC),
         end=datetime(2005, 7, 31, 23, 59, tzinfo=UTC))
    return server, asset_id


def listed_review(app, run_jobs, asset_id: int, starter: str) -> int:
    """Start a review as ``starter`` and run its listing job; returns its number."""
    with app.app_context():
        review = start_review(asset_id, user_named(app, starter))
        db.session.commit()
        review_id = review.id
    run_jobs(REVIEW_JOBS)
    return review_id


def approve(app, review_id: int, username: str, uids=None, now=None) -> None:
    """Approve as ``username`` (commits)."""
    with app.app_context():
        approve_review(review_id, user_named(app, username), uids, now=now)
        db.session.commit()


def execute(app, run_jobs, review_id: int, username: str) -> None:
    """Ask for the execution as ``username`` and run it."""
    with app.app_context():
        request_execution(review_id, user_named(app, username))
        db.session.commit()
    run_jobs(REVIEW_JOBS)


def test_one_unpaged_c_find_would_miss_studies_but_the_review_lists_every_one_past_retention(app, run_jobs,
                                                                                           archive):
    server, asset_id = archive
    with connect(server.archive(limit=None), [STUDY_ROOT_FIND]) as connection:
        assert len(connection.find(study_identifier()).matches) == 3
    review_id = listed_review(app, run_jobs, asset_id, "tim")
    row = review_row(app, review_id)
    assert row.status is ReviewStatus.PENDING and row.listed_at is not None
    assert row.studies_seen == len(ARCHIVE)
    found = review_items(app, review_id)
    assert {uid for uid, item in found.items() if not item.held} == EXPIRED
    assert {uid for uid, item in found.items() if item.held} == SPARED
    assert found[MINOR_OLD.study_uid].rule.startswith("Minors")
    assert found[MINOR_OLD.study_uid].keep_until == date(2011, 6, 1)
    assert found[MG_ALONE.study_uid].rule.startswith("Mammography")
    no_birth = found[NO_BIRTH.study_uid]
    assert no_birth.age is None and "no_birth_date" in no_birth.flags
    assert found[OLD_CT.study_uid].anchor_date == date(2010, 3, 1) and found[OLD_CT.study_uid].age == 50
    assert found[HELD_PATIENT.study_uid].held_by.startswith("Legal hold #")
    assert row.flagged.get("no_study_date") == 1  # the study dated 20250230 is flagged, never listed


def test_the_starter_cannot_approve_nor_a_technician_and_an_officer_cannot_execute(app, run_jobs, archive):
    server, asset_id = archive
    review_id = listed_review(app, run_jobs, asset_id, "carol")
    for who, message in (("carol", "started a review cannot approve"), ("tim", "compliance officer")):
        with app.app_context(), pytest.raises(StudyError, match=message):
            approve_review(review_id, user_named(app, who))
    approve(app, review_id, "dana")
    with app.app_context(), pytest.raises(StudyError, match="technician or an administrator"):
        request_execution(review_id, user_named(app, "dana"))
    assert review_row(app, review_id).status is ReviewStatus.APPROVED
    for spec_ in ARCHIVE:
        assert study_exists(server.archive(), spec_.study_uid) or spec_ is BAD_DATE


def test_execution_deletes_through_orthancs_rest_api_and_a_c_find_confirms_each_is_gone(
        app, run_jobs, archive, caplog):
    server, asset_id = archive
    caplog.set_level(logging.DEBUG)
    review_id = listed_review(app, run_jobs, asset_id, "tim")
    approve(app, review_id, "carol")
    execute(app, run_jobs, review_id, "tim")
    row = review_row(app, review_id)
    assert row.status is ReviewStatus.DONE, row.error
    assert caplog.records, "the job worker logs its jobs"
    for study in ARCHIVE:
        assert study.patient_id not in caplog.text, "no patient identifier in the logs"
    assert outcomes(app, review_id) == dict.fromkeys(EXPIRED, ItemOutcome.DESTROYED)
    for uid in EXPIRED:
        assert not study_exists(server.archive(), uid)
        assert server.client().find_study(uid) is None
    for kept in (*SPARED, RECENT_CT.study_uid, MINOR_RECENT.study_uid, MG_EARLY.study_uid):
        assert study_exists(server.archive(), kept)


def test_execution_rechecks_each_study_a_new_hold_or_a_changed_study_is_spared(app, run_jobs, archive):
    server, asset_id = archive
    review_id = listed_review(app, run_jobs, asset_id, "tim")
    approve(app, review_id, "carol", [OLD_CT.study_uid, NO_BIRTH.study_uid, MG_ALONE.study_uid])
    hold(app, "dana", "study", NO_BIRTH.study_uid)
    server.store(MG_ALONE.datasets())  # a second instance arrives: the study is no longer what was approved
    execute(app, run_jobs, review_id, "ada")
    assert outcomes(app, review_id) == {OLD_CT.study_uid: ItemOutcome.DESTROYED,
                                        NO_BIRTH.study_uid: ItemOutcome.NOW_HELD,
                                        MG_ALONE.study_uid: ItemOutcome.CHANGED}
    assert study_exists(server.archive(), NO_BIRTH.study_uid)
    assert study_exists(server.archive(), MG_ALONE.study_uid)
    assert study_exists(server.archive(), MINOR_OLD.study_uid), "not approved, so not deleted"


def test_an_approval_expires_after_the_configured_days(app, run_jobs, archive):
    _server, asset_id = archive
    review_id = listed_review(app, run_jobs, asset_id, "tim")
    approve(app, review_id, "carol", now=datetime.now(UTC) - timedelta(days=15))
    row = review_row(app, review_id)
    assert row.expires_at - row.approved_at == timedelta(days=14)
    with app.app_context():
        with pytest.raises(StudyError, match=r"approval of #\d+ expired"):
            request_execution(review_id, user_named(app, "tim"))
        db.session.commit()
    assert review_row(app, review_id).status is ReviewStatus.EXPIRED
    listed_review(app, run_jobs, asset_id, "tim")  # the archive is free for a new review


def test_a_second_review_of_an_archive_is_refused_while_one_is_pending(app, run_jobs, archive):
    _server, asset_id = archive
    with app.app_context():
        start_review(asset_id, user_named(app, "tim"))
        db.session.commit()
        with pytest.raises(StudyError, match="is pending"):
            start_review(asset_id, user_named(app, "carol"))
    run_jobs(REVIEW_JOBS)
    with app.app_context(), pytest.raises(StudyError, match="is pending"):
        start_review(asset_id, user_named(app, "carol"))


def test_orthanc_refusing_the_credentials_stops_the_execution_and_says_so(app, run_jobs, orthanc, staff,
                                                                          tmp_path):
    server = orthanc(limit=3)
    server.store(OLD_CT.datasets())
    asset_id = add_archive(app, server.port, method="orthanc_rest", server=server, folder=tmp_path,
                           password="not-the-password")
    review_id = listed_review(app, run_jobs, asset_id, "tim")
    approve(app, review_id, "carol")
    execute(app, run_jobs, review_id, "tim")
    row = review_row(app, review_id)
    assert row.status is ReviewStatus.FAILED
    assert "refused the credentials (HTTP 401)" in row.error
    assert outcomes(app, review_id) == {OLD_CT.study_uid: None}
    assert study_exists(server.archive(), OLD_CT.study_uid)
    with app.app_context():
        job = db.session.scalars(db.select(Job).where(Job.kind == "studies.execute")).one()
        assert job.status is JobStatus.FAILED and "HTTP 401" in (job.error or "")


FAILING_DELETE = """
function IncomingHttpRequestFilter(method, uri, ip, username, httpHeaders)
  if method == 'DELETE' then
    error('the storage area is failing')
  end
  return true
end
"""


def test_orthanc_failing_a_delete_is_reported_for_that_study_and_not_counted(app, run_jobs, orthanc, staff,
                                                                            tmp_path):
    server = orthanc(limit=3, lua=FAILING_DELETE)
    server.store(OLD_CT.datasets())
    asset_id = add_archive(app, server.port, method="orthanc_rest", server=server, folder=tmp_path)
    review_id = listed_review(app, run_jobs, asset_id, "tim")
    approve(app, review_id, "carol")
    execute(app, run_jobs, review_id, "tim")
    item = review_items(app, review_id)[OLD_CT.study_uid]
    assert item.outcome is ItemOutcome.FAILED and "HTTP 500" in item.outcome_detail
    assert review_row(app, review_id).status is ReviewStatus.DONE
    assert study_exists(server.archive(), OLD_CT.study_uid)


def test_list_only_counts_a_study_only_once_a_c_find_shows_the_vendor_deleted_it(app, run_jobs, orthanc,
                                                                                  staff):
    server = orthanc(limit=3)
    server.store(ds for s in (OLD_CT, NO_BIRTH) for ds in s.datasets())
    asset_id = add_archive(app, server.port, method="list_only")
    review_id = listed_review(app, run_jobs, asset_id, "tim")
    approve(app, review_id, "carol")
    client = server.client()
    client.delete_study(client.find_study(OLD_CT.study_uid))  # the vendor deleted one of the two
    execute(app, run_jobs, review_id, "tim")
    assert outcomes(app, review_id) == {OLD_CT.study_uid: ItemOutcome.DESTROYED,
                                        NO_BIRTH.study_uid: ItemOutcome.STILL_PRESENT}


def test_an_archive_that_stops_answering_half_way_fails_the_review_with_nothing_to_approve(app, orthanc,
                                                                                            staff):
    server = orthanc(limit=3)
    server.store(ds for s in ARCHIVE for ds in s.datasets())
    asset_id = add_archive(app, server.port, find_limit=3, timeout=3)  # answers in time until paused
    calls: list[int] = []

    def freeze_after_two(percent: int, stage: str) -> None:
        calls.append(percent)
        if len(calls) == 2:
            server.pause()

    with app.app_context():
        review = start_review(asset_id, user_named(app, "tim"))
        db.session.commit()
        review_id = review.id
        try:
            with pytest.raises(WalkInterrupted):
                run_listing(review_id, freeze_after_two)
        finally:
            server.resume()
    row = review_row(app, review_id)
    assert row.status is ReviewStatus.FAILED
    assert "stopped answering half-way" in row.error and "nothing was listed" in row.error
    assert review_items(app, review_id) == {}
    with app.app_context():
        with pytest.raises(StudyError, match="is failed"):
            approve_review(review_id, user_named(app, "carol"))
        start_review(asset_id, user_named(app, "tim"))  # a failed review frees the archive
