"""The certificate of destruction for a retention run."""

from __future__ import annotations

from sqlalchemy import select

from audit.retention.models import LegalHold, RetentionRun
from core.extensions import db
from tests.audit.reports.conftest import local, pdf_text
from tests.helpers import fixture_event


def add_run(app, status: str = "completed", started_by_id: int | None = None) -> int:
    """A retention run as the engine records it, and a hold in force during it."""
    with app.app_context():
        run = RetentionRun(
            status=status, started_at=local("2026-03-02 01:00"), heartbeat_at=local("2026-03-02 01:05"),
            finished_at=local("2026-03-02 01:06") if status != "running" else None,
            started_by="privacy.garcia", started_by_id=started_by_id,
            policies=({"tickets": {"years": 7, "months": 0, "days": 0, "anchor": "closed",
                                             "enabled": True, "period": "7 years"}}),
            counts=({"tickets": 1234}), held_counts=({"tickets": 5}),
            class_digests=({"tickets": "ab" * 32}), digest="cd" * 32, total=1234)
        db.session.add(run)
        if started_by_id:
            db.session.add(LegalHold(reason="Litigation 2026-17", placed_by_id=started_by_id,
                                     placed_at=local("2026-01-10 10:00"), object_type="ticket",
                                     object_key="PD-000042"))
        db.session.flush()
        fixture_event("retention_run", run.id)
        fixture_event("legal_hold", *db.session.execute(select(LegalHold.id)).scalars())
        db.session.commit()
        return run.id


def test_certificate_lists_counts_policies_holds_digest_and_signatures(app, runner, make_user, tmp_path):
    officer = make_user("compliance", "privacy.garcia", full_name="Elena Garcia")
    run_id = add_run(app, started_by_id=officer.id)
    out = tmp_path / "cert.pdf"
    result = runner.invoke(args=["reports", "build", "retention", "--run", str(run_id), "-o", str(out)])
    assert result.exit_code == 0, result.output
    text = pdf_text(out.read_bytes(), tmp_path)
    assert "Certificate of destruction" in text
    assert "1,234" in text and "7 years after closed" in text
    flat = "".join(text.split())
    assert "ab" * 32 in flat and "cd" * 32 in flat
    assert "Litigation 2026-17" in text and "ticket PD-000042" in text
    assert "Elena Garcia (privacy.garcia)" in text
    words = " ".join(text.split())
    assert "in the normal course of business, under Riverside General Hospital's records " \
           "retention schedule" in words
    assert "Witness or approver" in text


def test_unknown_or_unfinished_run_is_refused(app, runner, tmp_path):
    out = tmp_path / "cert.pdf"
    unknown = runner.invoke(args=["reports", "build", "retention", "--run", "999", "-o", str(out)])
    assert unknown.exit_code == 2 and "There is no retention run #999" in unknown.output
    running = add_run(app, status="running")
    busy = runner.invoke(args=["reports", "build", "retention", "--run", str(running), "-o", str(out)])
    assert busy.exit_code == 2 and "still running" in busy.output
    missing = runner.invoke(args=["reports", "build", "retention", "-o", str(out)])
    assert missing.exit_code == 2 and "needs the number of a retention run" in missing.output
    assert not out.exists()
