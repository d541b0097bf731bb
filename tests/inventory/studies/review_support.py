"""Archive nodes, users and holds for the study review tests."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from flask import Flask

from audit.retention.holds import NewHold, place_hold
from core.auth.models import User
from core.extensions import db
from inventory.asset_rules import AssetData
from inventory.services import create_asset
from inventory.studies import services
from inventory.studies.models import ItemOutcome, StudyReview, StudyReviewItem
from tests.inventory.studies.archive_support import ORTHANC_AET, PASSWORD, USER, OrthancServer, StudySpec, da

REVIEW_JOBS = ["studies.review", "studies.execute"]


def add_archive(app: Flask, port: int, tag: str = "PACS-01", ae_title: str = ORTHANC_AET,
                method: str = "list_only", server: OrthancServer | None = None, password: str = PASSWORD,
                folder: Path | None = None, find_limit: int | None = None, timeout: int = 5) -> int:
    """A PACS archive node on loopback ``port`` with its deletion settings; returns its id."""
    with app.app_context():
        asset = create_asset(AssetData(asset_tag=tag, name=f"Archive {tag}", kind="dicom_node",
                                       ip_address="127.0.0.1", ae_title=ae_title, port=port,
                                       dicom_role="scp", dicom_type="pacs_archive", verify_enabled=False),
                             user=None)
        password_file = ""
        if server is not None:
            assert folder is not None
            secret = folder / f"{tag}.password"
            secret.write_text(password + "\n")
            password_file = str(secret)
        services.save_settings(asset.id, services.ArchiveSettingsData(
            method=method, orthanc_url=f"http://127.0.0.1:{server.http_port}" if server else "",
            orthanc_username=USER if server else "", password_file=password_file, find_limit=find_limit,
            timeout=timeout), None)
        db.session.commit()
        return asset.id


def user_named(app: Flask, username: str) -> User:
    """A user loaded in the current app context."""
    found = db.session.execute(db.select(User).where(User.username == username)).scalar_one()
    return found


def hold(app: Flask, placed_by: str, kind: str, key: str = "", start=None, end=None) -> int:
    """Place a legal hold as ``placed_by``; returns its number."""
    with app.app_context():
        placed = place_hold(NewHold(reason="Litigation 2026-17", kind=kind, object_key=key, start=start,
                                    end=end), user_named(app, placed_by))
        db.session.commit()
        return placed.id


def review_items(app: Flask, review_id: int) -> dict[str, StudyReviewItem]:
    """A review's items by study UID (detached)."""
    with app.app_context():
        rows = db.session.scalars(db.select(StudyReviewItem)
                                  .where(StudyReviewItem.review_id == review_id)).all()
        for row in rows:
            db.session.expunge(row)
        return {row.study_uid: row for row in rows}


def review_row(app: Flask, review_id: int) -> StudyReview:
    """A review (detached)."""
    with app.app_context():
        row = db.session.get(StudyReview, review_id)
        assert row is not None
        db.session.expunge(row)
        return row


def outcomes(app: Flask, review_id: int) -> dict[str, ItemOutcome | None]:
    """Each approved study's outcome by UID."""
    return {uid: row.outcome for uid, row in review_items(app, review_id).items() if row.approved}


def spec(uid: str, day: date, patient: str, birth: str = "19600101", modality: str = "CT",
         accession: str = "") -> StudySpec:
    """A one-instance study."""
    return StudySpec(uid, da(day), patient, birth_date=birth, modality=modality, accession=accession)
