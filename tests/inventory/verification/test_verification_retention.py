"""Retention of stored C-ECHO checks: old ones go, checks under a legal hold stay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import time_machine
from sqlalchemy import select

from audit.retention.engine import ensure_default_policies, policy_for, run_retention
from audit.retention.models import LegalHold
from audit.retention.registry import record_classes
from core.extensions import db
from inventory.verification.models import NodeCheck
from tests.helpers import fixture_event

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def add_checks(app, asset_id: int, *ages: timedelta) -> None:
    """Store one check per age (before NOW)."""
    with app.app_context():
        for age in ages:
            db.session.add(NodeCheck(asset_id=asset_id, checked_at=NOW - age, outcome="ok",
                                     detail="", latency_ms=10.0, trigger="schedule"))
        db.session.commit()


def test_verification_results_class_defaults_to_two_years_with_no_floor(app):
    record_class = record_classes(app)["verification_results"]
    assert (record_class.default_years, record_class.floor_years) == (2, 0)
    assert record_class.anchors == ("created",)


def test_retention_purges_old_checks_but_keeps_those_of_a_held_asset(app, make_node, make_user):
    compliance = make_user("compliance", "privacy")
    held_node = make_node("CT-01", 104)
    other_node = make_node("MR-01", 105)
    old, recent = timedelta(days=800), timedelta(days=30)
    add_checks(app, held_node, old, recent)
    add_checks(app, other_node, old, old, recent)
    with time_machine.travel(NOW, tick=False), app.app_context():
        ensure_default_policies()
        policy_for("verification_results").enabled = True
        db.session.add(LegalHold(reason="Litigation about CT-01 downtime",
                                 placed_by_id=compliance.id, object_type="asset",
                                 object_key="CT-01"))
        db.session.flush()
        fixture_event("retention_policy", "verification_results")
        fixture_event("legal_hold", *db.session.execute(select(LegalHold.id)).scalars())
        db.session.commit()
        report = run_retention("test")
        result = next(c for c in report.classes if c.key == "verification_results")
        assert (result.count, result.held) == (2, 1)
        left = db.session.execute(select(NodeCheck.asset_id, NodeCheck.checked_at)).all()
        assert sorted((a, NOW - at) for a, at in left) == sorted(
            [(held_node, old), (held_node, recent), (other_node, recent)])
