"""Asset rules: validation messages, change history, disposal with sanitisation, warranty, audit."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pytest
from sqlalchemy import select

from audit.trail.history import history_of
from audit.trail.models import AuditEvent
from core.extensions import db
from inventory.asset_rules import local_today
from inventory.models import Asset, Sanitisation
from tests.inventory.assets_support import (  # noqa: F401 - autouse fixtures
    _short_checks,
    add_asset,
    node_form,
    workstation_form,
)


def _events(app, action: str) -> list[AuditEvent]:
    """Audit events of one action, oldest first."""
    with app.app_context():
        return list(db.session.scalars(select(AuditEvent).where(AuditEvent.action == action)
                                       .order_by(AuditEvent.seq)))


def _asset_count(app) -> int:
    with app.app_context():
        return len(db.session.scalars(select(Asset)).all())


@pytest.mark.parametrize(("field", "value", "message"), [
    ("ae_title", "A" * 17, "at most 16 characters (this one has 17)"),
    ("ae_title", "CT\\01", "cannot contain a backslash"),
    ("ae_title", "    ", "cannot be empty or all spaces"),
    ("port", "0", "between 1 and 65535 (not 0)"),
    ("port", "70000", "between 1 and 65535 (not 70000)"),
    ("hostname", "ct 01.hospital", "not a valid host name"),
    ("ip_address", "127.0.0.300", "is not an IPv4 or IPv6 address"),
    ("asset_tag", "CT 01/x", "use 1-40 letters, digits"),
    ("asset_tag", "new", "is reserved"),
    ("purchase_date", (date.today() + timedelta(days=30)).isoformat(), "cannot be in the future"),
    ("warranty_end", "2020-01-01", "cannot end before the purchase date"),
    ("modality", "", "a modality needs its code"),
])
def test_bad_node_input_is_refused_with_a_message_naming_the_field(client, login_as, app, field,
                                                                   value, message):
    login_as("technician")
    response = client.post("/assets/new", data=node_form(**{field: value}))
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert message in body
    assert f'id="{field}"' in body and "is-invalid" in body
    assert _asset_count(app) == 0


def test_bad_date_is_refused_by_the_form(client, login_as, app):
    login_as("technician")
    response = client.post("/assets/new", data=node_form(warranty_end="31/12/2029"))
    assert response.status_code == 422 and b"Not a valid date value" in response.data
    assert _asset_count(app) == 0


def test_dicom_node_needs_ae_title_port_and_address(client, login_as, app):
    login_as("technician")
    response = client.post("/assets/new", data=node_form(ae_title="", port="", hostname="",
                                                         ip_address=""))
    body = response.get_data(as_text=True)
    assert "a DICOM node needs an AE title" in body
    assert "a DICOM node needs a port" in body
    assert "a DICOM node needs a hostname or an IP address" in body
    assert _asset_count(app) == 0


def test_workstation_needs_no_dicom_fields_and_keeps_none(client, login_as, app):
    login_as("technician")
    assert client.post("/assets/new", data=workstation_form(ae_title="IGNORED",
                                                            port="104")).status_code == 302
    with app.app_context():
        asset = db.session.scalar(select(Asset))
        assert asset.ae_title is None and asset.port is None and asset.modality is None


def test_duplicate_tag_is_refused_ignoring_case(client, login_as, app):
    add_asset(app, asset_tag="CT-01")
    login_as("technician")
    response = client.post("/assets/new", data=node_form(asset_tag="ct-01"))
    assert response.status_code == 422
    assert b"asset tag ct-01 is already used by another asset" in response.data


def test_same_host_port_and_ae_title_twice_names_the_other_asset(client, login_as, app):
    login_as("technician")
    assert client.post("/assets/new", data=node_form()).status_code == 302
    response = client.post("/assets/new", data=node_form(asset_tag="CT-02", name="Other CT",
                                                         hostname="ct02.hospital.example"))
    assert response.status_code == 422
    assert (b"asset CT-01 already uses host 127.0.0.5, port 104 and AE title CT01"
            in response.data)
    different_port = node_form(asset_tag="CT-02", port="105")
    assert client.post("/assets/new", data=different_port).status_code == 302


def test_a_disposed_node_frees_its_address_for_its_replacement(client, login_as, app):
    add_asset(app, asset_tag="CT-OLD", kind="dicom_node", status="disposed",
              ip_address="127.0.0.5", ae_title="CT01", port=104, dicom_type="modality",
              modality="CT")
    login_as("technician")
    assert client.post("/assets/new", data=node_form()).status_code == 302


def test_edit_records_each_changed_field_with_who_old_and_new(client, login_as, app):
    user = login_as("technician", "sam")
    client.post("/assets/new", data=node_form())
    response = client.post("/assets/CT-01/edit", data=node_form(port="11112",
                                                                location="Room 9"))
    assert response.status_code == 302
    with app.app_context():
        changes = {c.field: c for c in history_of("asset", db.session.scalar(select(Asset.id)))}
        assert changes["port"].old_value == "104" and changes["port"].new_value == "11112"
        assert changes["location"].new_value == "Room 9"
        assert changes["port"].user_id == user.id
        assert "created" in changes and "name" not in changes
    page = client.get("/assets/CT-01").get_data(as_text=True)
    assert "11112" in page and "Room 9" in page and "sam" in page
    update = _events(app, "asset.update")
    assert len(update) == 1 and update[0].object_id == "CT-01"
    assert json.loads(update[0].details)["fields"] == ["location", "port"]


def test_saving_without_changes_records_nothing(client, login_as, app):
    login_as("technician")
    client.post("/assets/new", data=node_form())
    client.post("/assets/CT-01/edit", data=node_form())
    assert _events(app, "asset.update") == []


def test_edit_with_a_bad_value_changes_nothing(client, login_as, app):
    login_as("technician")
    client.post("/assets/new", data=node_form())
    response = client.post("/assets/CT-01/edit", data=node_form(port="70000",
                                                                location="Elsewhere"))
    assert response.status_code == 422
    with app.app_context():
        asset = db.session.scalar(select(Asset))
        assert asset.port == 104 and asset.location == "Main bldg L1"


def test_create_writes_the_audit_event_and_history(client, login_as, app):
    login_as("technician")
    client.post("/assets/new", data=node_form())
    created = _events(app, "asset.create")
    assert [e.object_id for e in created] == ["CT-01"]
    assert b"Created" in client.get("/assets/CT-01").data


def test_edit_cannot_set_disposed_status(client, login_as, app):
    login_as("technician")
    client.post("/assets/new", data=node_form())
    response = client.post("/assets/CT-01/edit", data=node_form(status="disposed"))
    assert response.status_code == 422


def _sanitisation(**overrides: str) -> dict[str, str]:
    data = {"method": "purge", "performed_on": (date.today() - timedelta(days=1)).isoformat(),
            "performed_by": "Min-jun Kim", "witness": "Sam Rivera",
            "certificate_ref": "SAN-0042"}
    data.update(overrides)
    return data


def test_disposal_of_an_asset_with_patient_data_requires_sanitisation(client, login_as, app):
    add_asset(app, asset_tag="RWS-01", holds_phi=True)
    login_as("technician")
    response = client.post("/assets/RWS-01/dispose", data={"method": ""})
    assert response.status_code == 422
    assert b"record how its storage was sanitised" in response.data
    response = client.post("/assets/RWS-01/dispose",
                           data=_sanitisation(witness="min-jun kim", performed_on=""))
    assert b"the date of sanitisation is required" in response.data
    assert b"the witness must be someone other" in response.data
    with app.app_context():
        assert db.session.scalar(select(Asset.status)) == "in_service"
    assert _events(app, "asset.dispose") == []


def test_disposal_records_sanitisation_history_and_audit(client, login_as, app):
    add_asset(app, asset_tag="RWS-01", holds_phi=True)
    login_as("technician")
    response = client.post("/assets/RWS-01/dispose", data=_sanitisation())
    assert response.status_code == 302
    with app.app_context():
        assert db.session.scalar(select(Asset.status)) == "disposed"
        record = db.session.scalar(select(Sanitisation))
        assert (record.method, record.witness, record.certificate_ref) == (
            "purge", "Sam Rivera", "SAN-0042")
    page = client.get("/assets/RWS-01").get_data(as_text=True)
    assert "Sanitisation record" in page and "SAN-0042" in page
    assert "/assets/RWS-01/edit" not in page
    event = _events(app, "asset.dispose")[0]
    assert json.loads(event.details)["method"] == "purge"
    assert client.get("/assets/RWS-01/edit").status_code == 302
    assert client.post("/assets/RWS-01/dispose", data=_sanitisation()).status_code == 302
    assert len(_events(app, "asset.dispose")) == 1


def test_asset_without_patient_data_is_disposed_without_sanitisation(client, login_as, app):
    add_asset(app, asset_tag="PRN-01", kind="printer", holds_phi=False)
    login_as("technician")
    assert client.post("/assets/PRN-01/dispose", data={"method": ""}).status_code == 302
    with app.app_context():
        assert db.session.scalar(select(Asset.status)) == "disposed"
        assert db.session.scalar(select(Sanitisation)) is None


def test_assets_are_never_deleted(client, login_as, app):
    add_asset(app, asset_tag="RWS-01")
    login_as("admin")
    assert client.delete("/assets/RWS-01").status_code == 405
    assert _asset_count(app) == 1


def test_warranty_view_lists_warranties_ending_in_the_next_90_days(client, login_as, app):
    with app.app_context():
        today = local_today()
    add_asset(app, asset_tag="SOON", warranty_end=today + timedelta(days=10))
    add_asset(app, asset_tag="EDGE", warranty_end=today + timedelta(days=90))
    add_asset(app, asset_tag="LATER", warranty_end=today + timedelta(days=91))
    add_asset(app, asset_tag="PAST", warranty_end=today - timedelta(days=1))
    add_asset(app, asset_tag="GONE", warranty_end=today + timedelta(days=5), status="disposed")
    login_as("compliance")
    body = client.get("/assets/warranty").get_data(as_text=True)
    shown = {t for t in ("SOON", "EDGE", "LATER", "PAST", "GONE") if f"/assets/{t}\"" in body}
    assert shown == {"SOON", "EDGE"}
    assert "10 days" in body
