"""Retention of stored C-ECHO checks, described for the retention engine."""

from __future__ import annotations

from sqlalchemy import select

from audit.retention.described import Condition, Described
from inventory.models import Asset
from inventory.verification.models import NodeCheck

RECORD_CLASS = "verification_results"


def _of_asset(tag: str) -> Condition:
    """The checks of the asset with this tag."""
    return NodeCheck.asset_id.in_(select(Asset.id).where(Asset.asset_tag == tag))


RETENTION_CLASS = Described(
    key=RECORD_CLASS, object_type="node_check", label="DICOM verification results",
    model=NodeCheck, anchors={"created": NodeCheck.checked_at}, default_years=2,
    floor_years=0, floor_rule="no legal minimum (operational records)",
    held_by={"asset": _of_asset})
