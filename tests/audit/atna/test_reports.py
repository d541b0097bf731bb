"""The PACS access reports from seeded messages: watchlist, bulk and after-hours exceptions, integrity."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text

from audit.atna.watchlist import NewWatch, add_watch
from audit.reports.registry import ReportError
from audit.reports.services import build_pdf, validate_request
from core.extensions import db
from tests.audit.atna.conftest import received
from tests.audit.atna.test_access_pages import seed
from tests.audit.reports.conftest import pdf_text

TZ = "America/New_York"
ACCESS = "dicom_110103_instances_accessed.xml"


@pytest.fixture
def app_config(app_config: dict) -> dict:
    """Reports in a time zone with daylight saving time, and a low bulk threshold."""
    app_config.update(PACSDESK_TIMEZONE=TZ, PACSDESK_ATNA_BULK_PATIENTS_PER_HOUR=3)
    return app_config


def access(when: str, user: str, patient: str, **extra) -> object:
    """A 110103 message at a local time (New York) by ``user`` for ``patient``."""
    moment = datetime.fromisoformat(when).replace(tzinfo=ZoneInfo(TZ))
    stamp = moment.isoformat(timespec="milliseconds")
    return received(ACCESS, replace={"2025-03-14T10:31:07.250-05:00": stamp,
                                     'UserID="dr.lee"': f'UserID="{user}"', "MRN-000417": patient, **extra})


def build(app, kind: str, tmp_path, **params) -> str:
    """Build a report from the command line's path and return its text."""
    with app.app_context():
        request = validate_request(kind, params.pop("date_from"), params.pop("date_to"), **params)
        return pdf_text(build_pdf(request), tmp_path)


def test_pacs_access_audit_lists_watched_bulk_and_after_hours_access_first(app, tmp_path):
    with app.app_context():
        add_watch(NewWatch("EMP-0042", "employee", "Radiology nurse"), None)
        db.session.commit()
    messages = [access("2026-03-10 10:00:00", "dr.day", "MRN-1"),                      # ordinary
                access("2026-03-10 14:00:00", "dr.curious", "EMP-0042"),                # watched
                access("2026-03-11 02:15:00", "dr.night", "MRN-2"),                     # after hours
                *(access(f"2026-03-12 09:{m:02d}:00", "clerk.bulk", f"MRN-{100 + m}") for m in range(5)),
                received("dicom_110114_login.xml",
                         replace={'EventOutcomeIndicator="0"': 'EventOutcomeIndicator="4"'}),
                received("dicom_110112_query.xml"), received("dicom_110106_export.xml")]
    seed(app, messages)
    report = build(app, "pacs-access-audit", tmp_path, date_from="2026-03-01", date_to="2026-03-31")
    watched = report.split("Access to watched patients")[1].split("After-hours access")[0]
    assert "dr.curious" in watched and "EMP-0042" in watched and "dr.day" not in watched
    after = report.split("After-hours access by user")[1].split("Bulk access")[0]
    assert "dr.night" in after and "dr.day" not in after and "dr.curious" not in after
    bulk = report.split("Bulk access")[1].split("Exports and media")[0]
    assert "clerk.bulk" in bulk and "2026-03-12 09:00" in bulk and "dr.night" not in bulk
    assert report.index("Access to watched patients") < report.index("Messages by event")
    assert "Intact" in report.split("Integrity of the PACS access log")[1]


def test_patient_imaging_access_report_lists_every_access_to_the_patients_studies(app, tmp_path):
    seed(app, [access("2026-03-10 10:00:00", "dr.lee", "MRN-000417"),
               access("2026-03-11 11:00:00", "dr.kim", "MRN-000417"),
               access("2026-03-12 12:00:00", "dr.other", "MRN-555",
                      **{"1.2.826.0.1.3680043.8.498.10001": "1.2.3.999"}),
               access("2025-01-01 12:00:00", "dr.before", "MRN-000417")])
    report = build(app, "patient-imaging-access", tmp_path, date_from="2026-03-01", date_to="2026-03-31",
                   obj="patient:MRN-000417")
    assert "MRN-000417" in report and "TEST^ALICE" in report
    assert "dr.lee" in report and "dr.kim" in report
    assert "dr.other" not in report and "dr.before" not in report
    assert "2026-03-10 10:00:00 -04:00" in report                     # local time with its offset (EDT)
    assert "Intact" in report


def test_a_tampered_batch_is_named_in_the_report(app, tmp_path):
    seed(app, [access("2026-03-10 10:00:00", "dr.lee", "MRN-000417")])
    with app.app_context():
        db.session.execute(text("UPDATE atna_message SET user_id = 'nobody'"))
        db.session.commit()
    report = build(app, "patient-imaging-access", tmp_path, date_from="2026-03-01", date_to="2026-03-31",
                   obj="patient:MRN-000417")
    assert "Problems found" in report and "batch #1" in report and "hash differs" in report


def test_the_patient_report_needs_a_patient(app):
    with app.app_context(), pytest.raises(ReportError, match="patient:ID"):
        validate_request("patient-imaging-access", "2026-03-01", "2026-03-31")
