"""Asset pages: who may see and change what, the list's filters, the asset page."""

from __future__ import annotations

import random

from sqlalchemy import func, select

from core.auth.models import User
from core.demo import DemoContext
from core.extensions import db
from inventory import services
from inventory.demo import seed_assets
from inventory.models import Asset, Sanitisation
from inventory.services import count_assets
from inventory.verification.models import NodeCheck, NodeState
from tests.inventory.assets_support import (  # noqa: F401 - autouse fixtures
    _short_checks,
    add_asset,
    node_form,
    workstation_form,
)


def test_requester_gets_403_on_every_inventory_page(client, login_as, app):
    add_asset(app, asset_tag="RWS-01")
    login_as("requester")
    for url in ("/assets", "/assets/RWS-01", "/assets/new", "/assets/RWS-01/edit",
                "/assets/warranty", "/assets/import", "/assets/export.csv",
                "/assets/RWS-01/dispose"):
        assert client.get(url).status_code == 403, url
    assert client.post("/assets/new", data=workstation_form()).status_code == 403


def test_compliance_reads_but_cannot_change_assets(client, login_as, app):
    add_asset(app, asset_tag="RWS-01", name="Reading station")
    login_as("compliance")
    assert client.get("/assets").status_code == 200
    page = client.get("/assets/RWS-01")
    assert page.status_code == 200 and b"Reading station" in page.data
    assert b"/assets/RWS-01/edit" not in page.data
    for url in ("/assets/new", "/assets/RWS-01/edit", "/assets/import",
                "/assets/RWS-01/dispose"):
        assert client.get(url).status_code == 403, url
    assert client.post("/assets/RWS-01/edit", data=workstation_form()).status_code == 403


def test_technician_creates_a_node_and_sees_its_page(client, login_as):
    login_as("technician")
    response = client.post("/assets/new", data=node_form())
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/assets/CT-01")
    page = client.get("/assets/CT-01").get_data(as_text=True)
    assert "CT scanner 1" in page and "CT01" in page and "127.0.0.5:104" in page


def test_inventory_appears_in_navigation_for_readers_only(client, login_as, auth):
    login_as("technician", "tech")
    assert b'href="/assets"' in client.get("/").data
    auth.logout()
    login_as("requester", "req")
    assert b'href="/assets"' not in client.get("/").data


def test_list_filters_by_kind_status_location_department_and_search(client, login_as, app):
    add_asset(app, asset_tag="RWS-01", name="Reading station", location="Room A",
              department="Radiology")
    add_asset(app, asset_tag="PRN-01", name="Film printer", kind="printer",
              location="Room B", department="Cardiology", status="in_maintenance")
    login_as("technician")

    def tags(query: str) -> set[str]:
        body = client.get(f"/assets?{query}").get_data(as_text=True)
        return {t for t in ("RWS-01", "PRN-01") if f"/assets/{t}\"" in body}

    assert tags("") == {"RWS-01", "PRN-01"}
    assert tags("kind=printer") == {"PRN-01"}
    assert tags("status=in_service") == {"RWS-01"}
    assert tags("location=room+a") == {"RWS-01"}
    assert tags("department=Cardiology") == {"PRN-01"}
    assert tags("q=film") == {"PRN-01"}
    assert tags("q=%25") == set()
    assert tags("kind=nonsense") == {"RWS-01", "PRN-01"}


def test_list_paginates(client, login_as, app):
    for i in range(55):
        add_asset(app, asset_tag=f"WS-{i:03d}", name=f"Station {i}")
    login_as("technician")
    first = client.get("/assets").get_data(as_text=True)
    second = client.get("/assets?page=2").get_data(as_text=True)
    assert "/assets/WS-000\"" in first and "/assets/WS-054\"" not in first
    assert "/assets/WS-054\"" in second and "55 results" in second


def test_unknown_tag_is_404(client, login_as):
    login_as("technician")
    assert client.get("/assets/NOPE").status_code == 404


def test_tag_lookup_ignores_case_and_redirects_to_the_real_tag(client, login_as, app):
    add_asset(app, asset_tag="RWS-01")
    login_as("technician")
    response = client.get("/assets/rws-01")
    assert response.status_code == 302 and response.headers["Location"].endswith("/assets/RWS-01")


def _node_at(port: int, **overrides: str) -> dict[str, str]:
    """Form fields of a node on loopback at ``port``."""
    return node_form(ip_address="127.0.0.1", hostname="", port=str(port), ae_title="TESTSCP",
                     **overrides)


def _state(app, tag: str) -> str | None:
    with app.app_context():
        return db.session.scalar(select(NodeState.state).join(Asset, Asset.id == NodeState.asset_id)
                                 .where(Asset.asset_tag == tag))


def test_new_node_is_checked_in_the_background_and_its_page_shows_the_state(run_jobs,
        client, login_as, app, verification_scp):
    port = verification_scp()
    login_as("technician")
    assert client.post("/assets/new", data=_node_at(port)).status_code == 302
    run_jobs()
    assert _state(app, "CT-01") == "up"
    page = client.get("/assets/CT-01").get_data(as_text=True)
    assert 'data-node-state="up"' in page and "Verify now" in page


def test_changing_the_port_checks_the_node_again(run_jobs, client, login_as, app, verification_scp,
                                                 closed_port):
    port = verification_scp()
    login_as("technician")
    client.post("/assets/new", data=_node_at(closed_port))
    run_jobs()
    with app.app_context():
        assert db.session.scalar(select(NodeCheck.outcome)) == "refused"
    client.post("/assets/CT-01/edit", data=_node_at(port))
    run_jobs()
    with app.app_context():
        outcomes = list(db.session.scalars(select(NodeCheck.outcome).order_by(NodeCheck.id)))
    assert outcomes == ["refused", "ok"]
    client.post("/assets/CT-01/edit", data=_node_at(port, location="Room 7"))
    run_jobs()
    with app.app_context():
        assert db.session.scalar(select(func.count(NodeCheck.id))) == 2


def test_verify_now_queues_a_check_the_page_waits_for_then_shows(client, login_as, app, run_jobs,
                                                                  verification_scp):
    port = verification_scp()
    add_asset(app, asset_tag="CT-01", kind="dicom_node", ip_address="127.0.0.1", port=port,
              ae_title="TESTSCP", dicom_type="modality", modality="CT")
    login_as("technician")
    response = client.post("/assets/CT-01/verify", follow_redirects=True)
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "Checking TESTSCP@127.0.0.1:" in page and "A C-ECHO check is queued" in page
    assert 'data-refresh-seconds="2"' in page
    assert client.post("/assets/CT-01/verify").status_code == 302
    assert len(run_jobs()) == 1, "a second click while the first check waits adds no second check"
    page = client.get("/assets/CT-01").get_data(as_text=True)
    assert 'data-node-state="up"' in page and "data-refresh-seconds" not in page
    assert _state(app, "CT-01") == "up"


def test_compliance_cannot_verify_now(client, login_as, app):
    add_asset(app, asset_tag="CT-01", kind="dicom_node", ip_address="127.0.0.1", port=104,
              ae_title="CT01")
    login_as("compliance")
    assert client.post("/assets/CT-01/verify").status_code == 403


def test_verify_now_of_a_workstation_says_it_cannot(client, login_as, app):
    add_asset(app, asset_tag="RWS-01")
    login_as("technician")
    response = client.post("/assets/RWS-01/verify", follow_redirects=True)
    assert b"Cannot verify RWS-01" in response.data


def test_list_filters_by_node_state_with_unchecked_nodes_unknown(client, login_as, app):
    up = add_asset(app, asset_tag="N-UP", kind="dicom_node", ip_address="127.0.0.1", port=1,
                   ae_title="A")
    down = add_asset(app, asset_tag="N-DOWN", kind="dicom_node", ip_address="127.0.0.1",
                     port=2, ae_title="B")
    add_asset(app, asset_tag="N-NEVER", kind="dicom_node", ip_address="127.0.0.1", port=3,
              ae_title="C")
    add_asset(app, asset_tag="RWS-01")
    with app.app_context():
        db.session.add_all([NodeState(asset_id=up, state="up"),
                            NodeState(asset_id=down, state="down")])
        db.session.commit()
    login_as("technician")

    def tags(state: str) -> set[str]:
        body = client.get(f"/assets?node_state={state}").get_data(as_text=True)
        return {t for t in ("N-UP", "N-DOWN", "N-NEVER", "RWS-01") if f"/assets/{t}\"" in body}

    assert tags("up") == {"N-UP"}
    assert tags("down") == {"N-DOWN"}
    assert tags("unknown") == {"N-NEVER"}
    assert tags("") == {"N-UP", "N-DOWN", "N-NEVER", "RWS-01"}


def test_demo_fleet_has_modalities_infrastructure_and_a_sanitised_disposal(app, make_user):
    tech = make_user("technician", "pacs.sam")
    with app.app_context():
        ctx = DemoContext(rng=random.Random(1), users={"pacs.sam": db.session.get(User, tech.id)})
        seed_assets(ctx)
        db.session.commit()
        modalities = set(db.session.scalars(select(Asset.modality).where(
            Asset.modality.is_not(None))))
        assert {"CT", "MR", "CR", "US", "MG"} <= modalities
        types = set(db.session.scalars(select(Asset.dicom_type)))
        assert {"pacs_archive", "router"} <= types
        assert db.session.scalar(select(func.count(Asset.id)).where(
            Asset.kind == "printer")) >= 1
        disposed = db.session.scalar(select(Asset).where(Asset.status == "disposed"))
        assert db.session.scalar(select(Sanitisation).where(
            Sanitisation.asset_id == disposed.id)) is not None
        soon = db.session.scalars(services.warranty_query(90)).all()
        assert soon
        assert any("127.0.0.1" in note for note in ctx.notes)
        assert count_assets() > 15
