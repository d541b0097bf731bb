"""The PACS access log under the retention schedule: 6-year floor, whole batches or months, holds, verify."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from audit.atna.models import AtnaMessage
from audit.atna.verify import verify_batches
from audit.retention.engine import RetentionError, run_retention, update_policy
from audit.retention.holds import NewHold, place_hold
from audit.trail.models import AuditEvent
from core.extensions import db
from tests.audit.atna.conftest import received
from tests.audit.atna.test_access_pages import seed

ACCESS = "dicom_110103_instances_accessed.xml"


def messages(app) -> list[str]:
    """Users of the stored messages, oldest first."""
    with app.app_context():
        query = select(AtnaMessage.user_id).order_by(AtnaMessage.received_at)
        return list(db.session.execute(query).scalars())


def old_and_new(app) -> None:
    """Two batches received seven years ago, and one now."""
    long_ago = datetime.now(UTC) - timedelta(days=7 * 366)
    seed(app, [received(ACCESS, at=long_ago, replace={"dr.lee": "dr.old"})], receiver="r1")
    seed(app, [received(ACCESS, at=long_ago + timedelta(minutes=5), replace={"dr.lee": "dr.older"})],
         receiver="r2")
    seed(app, [received(ACCESS, replace={"dr.lee": "dr.new"})], receiver="r3")


def test_the_access_log_cannot_be_kept_less_than_six_years(app):
    with app.app_context(), pytest.raises(RetentionError, match="at least 6 years"):
        update_policy("atna_messages", 5, 11, 0, "received", True)


def test_a_retention_run_destroys_what_is_past_the_policy_and_verification_stays_intact(app, runner):
    old_and_new(app)
    with app.app_context():
        update_policy("atna_messages", 6, 0, 0, "received", True)
        db.session.commit()
        report = run_retention("test")
        (result,) = [c for c in report.classes if c.key == "atna_messages"]
        assert result.count >= 1
    assert messages(app) == ["dr.new"]
    with app.app_context():
        events = [json.loads(d) for d in db.session.execute(
            select(AuditEvent.details).where(AuditEvent.action == "atna.purged")).scalars()]
        assert sum(e["count"] for e in events) == 2
        purged = sorted(b for e in events for first, last in e["batches"] for b in range(first, last + 1))
        assert purged == [1, 2]
        assert verify_batches() == []
    assert runner.invoke(args=["audit", "verify"]).exit_code == 0


def test_a_hold_on_the_access_log_keeps_the_messages_it_covers(app, make_user):
    admin = make_user("admin", "holder")
    old_and_new(app)
    with app.app_context():
        update_policy("atna_messages", 6, 0, 0, "received", True)
        place_hold(NewHold(reason="Litigation 2019-7", kind="class", record_class="atna_messages",
                           start=datetime(1990, 1, 1, tzinfo=UTC), end=datetime.now(UTC)),
                   db.session.get(type(admin), admin.id))
        db.session.commit()
        run_retention("test")
        assert db.session.execute(select(func.count()).select_from(AtnaMessage)).scalar_one() == 3


def test_a_hold_on_part_of_a_batch_keeps_the_whole_batch_and_its_proof(app, make_user, runner):
    admin = make_user("admin", "holder")
    long_ago = datetime.now(UTC) - timedelta(days=7 * 366)
    seed(app, [received(ACCESS, at=long_ago, replace={"dr.lee": "dr.before"}),
               received(ACCESS, at=long_ago + timedelta(seconds=30), replace={"dr.lee": "dr.within"})])
    with app.app_context():
        update_policy("atna_messages", 6, 0, 0, "received", True)
        place_hold(NewHold(reason="Complaint 2019-12", kind="class", record_class="atna_messages",
                           start=long_ago + timedelta(seconds=20), end=long_ago + timedelta(seconds=40)),
                   db.session.get(type(admin), admin.id))
        db.session.commit()
        run_retention("test")
        purged = [json.loads(d) for d in db.session.execute(
            select(AuditEvent.details).where(AuditEvent.action == "atna.purged")).scalars()]
        assert [e for e in purged if e["count"] or e["batches"]] == []  # (empty months go on PostgreSQL)
        assert verify_batches() == []
    assert messages(app) == ["dr.before", "dr.within"]
    assert runner.invoke(args=["audit", "verify"]).exit_code == 0
