"""Every report kind in the registry closes with the one review and signature block."""

from __future__ import annotations

from pathlib import Path

from audit.reports import services
from audit.reports.registry import report_kinds
from core.extensions import db
from inventory.models import Asset
from inventory.studies.models import DeletionMethod, ReviewStatus, StudyReview
from tests.audit.reports.conftest import local, pdf_text
from tests.audit.reports.test_retention_certificate import add_run
from tests.helpers import fixture_event

CAPTIONS = ("Name", "Role", "Date", "Signature")


def add_review(app, user_id: int) -> int:
    """An executed imaging study review (nothing destroyed), as its certificate needs."""
    with app.app_context():
        asset = Asset(asset_tag="PACS-01", name="Main archive", kind="dicom_node")
        db.session.add(asset)
        db.session.flush()
        review = StudyReview(asset_id=asset.id, status=ReviewStatus.DONE, started_by_id=user_id,
                             approved_by_id=user_id, executed_by_id=user_id,
                             executed_at=local("2026-03-03 10:00"), finished_at=local("2026-03-03 10:05"),
                             method=DeletionMethod.LIST_ONLY)
        db.session.add(review)
        db.session.flush()
        fixture_event("asset", asset.asset_tag)
        fixture_event("study_review", review.id)
        db.session.commit()
        return review.id


def build(app, tmp_path: Path, key: str, run_id: int | None) -> str:
    """One kind's PDF as text, built as the command line does."""
    with app.app_context():
        kind = next(k for k in report_kinds() if k.key == key)
        period = ("2026-03-01", "2026-03-31") if kind.needs_period else (None, None)
        obj = "patient:MRN-000417" if key == "patient-imaging-access" else None
        request = services.validate_request(key, *period, obj=obj, run_id=run_id if kind.needs_run else None)
        pdf = services.build_from_cli(request)
        db.session.commit()
    return pdf_text(pdf, tmp_path)


def test_every_report_kind_ends_with_the_review_and_signature_block(app, make_user, tmp_path):
    officer = make_user("compliance", "privacy.garcia", full_name="Elena Garcia")
    runs = {"retention": add_run(app, started_by_id=officer.id),
            "study_destruction": add_review(app, officer.id)}
    with app.app_context():
        keys = [kind.key for kind in report_kinds()]
    assert {"access-audit", "training", "retention", "helpdesk", "inventory",
            "study_destruction"} <= set(keys)
    for key in keys:
        text = build(app, tmp_path, key, runs.get(key))
        assert text.count("Review and signature") == 1, key
        block = text[text.index("Review and signature"):]
        appendix = block.find("Appendix")
        if appendix >= 0:      # an appendix follows the block, never the other way round
            block = block[:appendix]
        else:                  # nothing follows it: it is on the last page
            assert "Review and signature" in [page for page in text.split("\f") if page.strip()][-1], key
        lines = [" ".join(line.split()) for line in block.splitlines()]
        assert " ".join(CAPTIONS) in lines, (key, block)
        if key in runs:
            assert "Destroyed by" in block and "I certify that" in " ".join(block.split()), key
        else:
            assert "Reviewed by" in lines and "Findings and follow-up actions" in block, key
            assert "report id" in " ".join(block.split()), key
