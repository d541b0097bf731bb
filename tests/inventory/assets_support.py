"""Shared helpers for the asset tests: form data and direct creation."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

from core.extensions import db
from inventory.models import Asset
from tests.helpers import ANSWER_TIMEOUT, fixture_event


@pytest.fixture(autouse=True)
def _short_checks(app_config: dict, request: pytest.FixtureRequest) -> None:
    """Checks started by saving a node end fast (the test addresses answer nobody).

    A test with a live SCP expects its answer, which a loaded machine may delay past half a second.
    """
    answering = "verification_scp" in request.fixturenames
    app_config["PACSDESK_VERIFY_TIMEOUT"] = ANSWER_TIMEOUT if answering else 0.5


def node_form(**overrides: Any) -> dict[str, Any]:
    """Form fields of a valid DICOM node (CT scanner)."""
    data = {
        "asset_tag": "CT-01", "name": "CT scanner 1", "kind": "dicom_node",
        "status": "in_service", "location": "Main bldg L1", "department": "Radiology",
        "assigned_user_id": "", "manufacturer": "Siemens", "model": "SOMATOM",
        "serial_number": "SN1", "hostname": "ct01.hospital.example", "ip_address": "127.0.0.5",
        "os_version": "VA40", "purchase_date": "2024-01-10", "warranty_end": "2029-01-10",
        "notes": "", "ae_title": "CT01", "port": "104", "dicom_role": "both",
        "dicom_type": "modality", "modality": "CT", "verify_enabled": "y",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def workstation_form(**overrides: Any) -> dict[str, Any]:
    """Form fields of a valid reading workstation."""
    data = node_form(kind="workstation", asset_tag="RWS-01", name="Reading station 1",
                     hostname="rws01.hospital.example", ip_address="", ae_title="", port="",
                     modality="")
    data.update(overrides)
    return data


def add_asset(app: Flask, **fields: Any) -> int:
    """Insert an asset directly; returns its id."""
    values = {"asset_tag": "A-1", "name": "Asset", "kind": "workstation"} | fields
    with app.app_context():
        asset = Asset(**values)
        db.session.add(asset)
        db.session.flush()
        fixture_event("asset", asset.asset_tag)
        db.session.commit()
        return asset.id
