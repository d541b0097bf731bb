"""The study retention pages through the test client: rules, holds, a review from start to certificate."""

from __future__ import annotations

import subprocess
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from audit.trail.models import AuditEvent
from core.extensions import db
from core.jobs.models import Job
from core.jobs.queue import cancel_job
from inventory.studies.models import ImagingRule, ItemOutcome, ReviewStatus, StudyReview, StudyReviewItem
from inventory.studies.query import study_exists
from inventory.studies.reports import uid_digest
from tests.helpers import fixture_event
from tests.inventory.studies.review_support import REVIEW_JOBS, add_archive, review_items, spec

U = "1.2.826.0.1.3680043.10.546."
OLD_CT = spec(U + "1", date(2010, 3, 1), "PAT-A-9876")
OLD_MR = spec(U + "2", date(2011, 5, 1), "PAT-B-5432", modality="MR")
OLD_MG = spec(U + "3", date(2012, 2, 1), "PAT-C-2468", modality="MG")
HELD = spec(U + "4", date(2009, 2, 1), "PAT-HELD-1357")
NEW = spec(U + "5", date(2025, 2, 1), "PAT-D-1111")


def pdf_text(data: bytes, tmp_path: Path) -> str:
    """The PDF's text, laid out, via poppler's pdftotext."""
    source = tmp_path / "certificate.pdf"
    source.write_bytes(data)
    return subprocess.run(["pdftotext", "-layout", str(source), "-"], capture_output=True,
                          check=True).stdout.decode()


def test_compliance_officers_set_rules_on_the_rules_page_and_bad_periods_are_refused(app, client, login_as):
    login_as("compliance", "carol")
    page = client.get("/studies/rules")
    assert page.status_code == 200 and b"Check your state&#39;s law" in page.data
    assert b"21 CFR 900.12(c)(4)" in page.data
    refused = client.post("/studies/rules",
                          data={"modality": "CT", "period": "seven years", "anchor": "study"})
    assert refused.status_code == 422 and b"is not an ISO-8601 duration" in refused.data
    saved = client.post("/studies/rules", data={"modality": "CT", "period": "P10Y", "anchor": "last-study"})
    assert saved.status_code == 302
    with app.app_context():
        row = db.session.scalars(db.select(ImagingRule).where(ImagingRule.modality == "CT")).one()
        assert row.period == "P10Y" and row.updated_by_id is not None


def test_technicians_and_requesters_cannot_open_the_rules_page(client, login_as):
    login_as("technician")
    assert client.get("/studies/rules").status_code == 403
    assert client.post("/studies/rules", data={"modality": "CT", "period": "P1D"}).status_code == 403


def test_a_legal_hold_on_a_patient_or_study_is_placed_from_the_retention_page(app, client, login_as):
    login_as("compliance", "carol")
    bad = client.post("/retention/holds/new",
                      data={"reason": "Subpoena", "kind": "study", "object_key": "1.2.x"})
    assert bad.status_code == 422 and b"digits separated by dots" in bad.data
    placed = client.post("/retention/holds/new", data={"reason": "Subpoena", "kind": "patient",
                                                       "object_key": "PAT-HELD-1357"})
    assert placed.status_code == 302
    home = client.get("/retention")
    assert b"imaging studies of patient ID PAT-HELD-1357" in home.data


@pytest.mark.integration
def test_a_review_from_start_to_certificate_through_the_pages(app, client, auth, make_user, run_jobs, orthanc,
                                                               tmp_path):
    for role, name in (("technician", "tim"), ("compliance", "carol")):
        make_user(role, name, full_name=name.title())
    server = orthanc(limit=2)
    server.store(ds for s in (OLD_CT, OLD_MR, OLD_MG, HELD, NEW) for ds in s.datasets())
    asset_id = add_archive(app, server.port, method="orthanc_rest", server=server, folder=tmp_path,
                           find_limit=2)
    auth.login("carol")
    client.post("/retention/holds/new",
                data={"reason": "Subpoena", "kind": "patient", "object_key": HELD.patient_id})
    auth.logout()

    auth.login("tim")
    started = client.post("/studies/reviews", data={"archive": asset_id})
    assert started.status_code == 302
    detail_url = started.headers["Location"]
    again = client.post("/studies/reviews", data={"archive": asset_id})
    assert again.status_code == 422 and b"is pending" in again.data
    run_jobs(REVIEW_JOBS)
    page = client.get(detail_url)
    assert page.status_code == 200
    for study in (OLD_CT, OLD_MR, OLD_MG):
        assert study.study_uid.encode() in page.data
    assert "•••9876".encode() in page.data and b"PAT-A-9876" not in page.data
    assert b"spared by legal holds 1" in page.data and HELD.study_uid.encode() in page.data
    assert NEW.study_uid.encode() not in page.data
    review_id = int(detail_url.rsplit("/", 1)[1])
    assert client.post(f"{detail_url}/approve", data={"scope": "all"}).status_code == 403
    auth.logout()

    auth.login("carol")
    approve_page = client.get(detail_url)
    assert b"Approve all 3" in approve_page.data
    approved = client.post(f"{detail_url}/approve", data={"scope": "chosen",
                                                          "study": [OLD_CT.study_uid, OLD_MR.study_uid]})
    assert approved.status_code == 302
    assert client.post(f"{detail_url}/execute").status_code == 403
    auth.logout()

    auth.login("tim")
    assert client.post(f"{detail_url}/execute").status_code == 302
    run_jobs(REVIEW_JOBS)
    done = client.get(detail_url)
    assert b"destroyed 2" in done.data
    assert not study_exists(server.archive(), OLD_CT.study_uid)
    assert study_exists(server.archive(), OLD_MG.study_uid) and study_exists(server.archive(), HELD.study_uid)
    csv_file = client.get(f"{detail_url}/studies.csv")
    assert csv_file.status_code == 200 and b"PAT-A-9876" not in csv_file.data and b"9876" in csv_file.data
    auth.logout()

    auth.login("carol")
    asked = client.post(f"{detail_url}/certificate")
    assert asked.status_code == 302
    run_jobs()
    pdf = client.get(asked.headers["Location"] + "/download")
    assert pdf.status_code == 200 and pdf.data.startswith(b"%PDF-")
    text = pdf_text(pdf.data, tmp_path)
    squashed = "".join(text.split())  # a long UID may wrap in its table cell
    assert "Certificate of destruction of imaging studies" in text
    assert uid_digest([OLD_CT.study_uid, OLD_MR.study_uid]) in text
    assert OLD_CT.study_uid in squashed and OLD_MR.study_uid in squashed and OLD_MG.study_uid not in squashed
    assert "•••9876" in text and "PAT-A-9876" not in text
    assert "Tim (tim)" in text and "Carol (carol)" in text
    assert "Adults: 7 years" in text and "P7Y" in text and "Subpoena" in text and "patient •••1357" in text
    assert items_outcomes(app, review_id) == {OLD_CT.study_uid: ItemOutcome.DESTROYED,
                                              OLD_MR.study_uid: ItemOutcome.DESTROYED}
    with app.app_context():
        actions = set(db.session.scalars(db.select(AuditEvent.action)))
    assert {"studies.review_started", "studies.review_listed", "studies.review_approved",
            "studies.execution_started", "studies.destroyed", "studies.execution_finished",
            "studies.list_exported", "report.generate"} <= actions


def items_outcomes(app, review_id: int) -> dict:
    """Approved studies' outcomes."""
    return {uid: row.outcome for uid, row in review_items(app, review_id).items() if row.approved}


def test_a_review_whose_listing_job_is_gone_no_longer_blocks_its_archive(app, client, login_as, closed_port):
    login_as("technician", "tim")
    asset_id = add_archive(app, closed_port, timeout=1)
    first = client.post("/studies/reviews", data={"archive": asset_id})
    assert first.status_code == 302
    with app.app_context():
        job = db.session.scalars(db.select(Job).where(Job.kind == "studies.review")).one()
        cancel_job(job.id)
        db.session.commit()
    second = client.post("/studies/reviews", data={"archive": asset_id})
    assert second.status_code == 302 and second.headers["Location"] != first.headers["Location"]
    old = client.get(first.headers["Location"])
    assert b"failed" in old.data and b"ended without listing the archive" in old.data


def test_executing_a_lapsed_approval_marks_the_review_expired(app, client, auth, make_user, closed_port):
    make_user("technician", "tim")
    make_user("compliance", "carol")
    asset_id = add_archive(app, closed_port, timeout=1)
    approved = datetime.now(UTC) - timedelta(days=15)
    with app.app_context():
        row = StudyReview(asset_id=asset_id, status=ReviewStatus.APPROVED, listed_at=approved,
                          approved_at=approved, expires_at=approved + timedelta(days=14))
        db.session.add(row)
        db.session.flush()
        day = date(2010, 3, 1)
        db.session.add(StudyReviewItem(review_id=row.id, study_uid=OLD_CT.study_uid, study_date=day,
                                       rule="Adults", anchor_date=day, keep_until=date(2017, 3, 1),
                                       approved=True))
        fixture_event("study_review", row.id)
        db.session.commit()
        review_id = row.id
    auth.login("tim")
    response = client.post(f"/studies/reviews/{review_id}/execute", follow_redirects=True)
    assert b"approval of #" in response.data and b"expired" in response.data
    with app.app_context():
        assert db.session.get(StudyReview, review_id).status is ReviewStatus.EXPIRED
        assert "studies.review_expired" in db.session.scalars(db.select(AuditEvent.action)).all()
