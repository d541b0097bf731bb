"""Asset pages: who may see and change what, the list's filters, the asset page."""

from __future__ import annotations

from tests.inventory.assets_support import (  # noqa: F401 - autouse fixtures
    _settle_checks,
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
    assert "CT scanner 1" in page and "CT01" in page and "10.0.0.5:104" in page


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
