"""A PACS technician adds a DICOM node and watches the scheduler verify it, lose it and find it again."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.pages import fill_new_dicom_node, log_in, log_out, move_asset, reload_until, screenshot

pytestmark = pytest.mark.e2e

NODE_TAG = "PACS-ARCH-01"
NODE_NAME = "Main archive"
DOWN_TITLE = f"DICOM node down: {NODE_NAME} ({NODE_TAG})"
# One sweep every 10 s with 2 s checks: a state change shows within two sweeps.
SWEEP_WAIT = 35
WORKSTATIONS_CSV = (
    "asset_tag,name,kind,location,department,hostname,manufacturer,model\r\n"
    "WS-RAD-101,Reading station 101,workstation,Reading room 1,Radiology,rad-ws-101,Barco,MDCC-6530\r\n"
    "WS-RAD-102,Reading station 102,workstation,Reading room 1,Radiology,rad-ws-102,Barco,MDCC-6530\r\n"
    "WS-ED-201,ED viewing station,workstation,Emergency department,Emergency,ed-ws-201,Dell,OptiPlex 7010\r\n"
)


def node_state(page: Page) -> str:
    """The verification state the asset page shows (up, down, degraded, unknown)."""
    badge = page.locator("[data-node-state]")
    return badge.get_attribute("data-node-state") or "" if badge.count() else ""


def test_technician_sees_a_node_verified_lost_and_recovered_and_imports_workstations(server, pages,
                                                                                     orthanc):
    """Up on its own, down with an automatic ticket when Orthanc stops, recovery noted on that ticket."""
    page = pages.open(server.url)
    log_in(page, "pacs.sam")
    fill_new_dicom_node(page, NODE_TAG, NODE_NAME, orthanc.port, orthanc.aet)
    screenshot(page, "technician-new-node")
    page.get_by_role("button", name="Create asset").click()
    expect(page).to_have_url(re.compile(f"/assets/{NODE_TAG}$"))

    reload_until(page, lambda p: node_state(p) == "up", "the node to be up", SWEEP_WAIT)
    expect(page.locator("[data-node-state]")).to_have_text(re.compile("up", re.IGNORECASE))
    screenshot(page, "technician-node-up")

    orthanc.stop()
    reload_until(page, lambda p: node_state(p) == "down", "the node to be down", SWEEP_WAIT)
    screenshot(page, "technician-node-down")

    page.get_by_role("link", name="Queue").first.click()
    outage = page.get_by_role("row").filter(has_text=DOWN_TITLE)
    reload_until(page, lambda p: outage.count() == 1, "the node-down ticket in the queue", SWEEP_WAIT)
    expect(outage).to_contain_text("PACS Desk (automatic)")
    screenshot(page, "technician-queue-node-down")
    outage.get_by_role("link", name=re.compile(r"^PD-\d+$")).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(DOWN_TITLE)

    orthanc.start()
    timeline = page.locator("#timeline")
    reload_until(page, lambda p: "answers C-ECHO again" in timeline.inner_text(),
                 "the recovery on the node-down ticket", SWEEP_WAIT)
    expect(timeline).to_contain_text(f"{NODE_NAME} ({NODE_TAG}) answers C-ECHO again")
    screenshot(page, "technician-ticket-recovered")

    page.get_by_role("link", name=NODE_TAG).first.click()
    # Answering again, shown as degraded (intermittent) while the outage is recent.
    expect(page.locator("[data-node-state]")).to_have_attribute("data-node-state",
                                                                re.compile("^(up|degraded)$"))
    move_asset(page, NODE_TAG, "Data centre, rack B5")

    page.get_by_role("link", name="Inventory").first.click()
    page.get_by_role("link", name="Import CSV").click()
    page.get_by_label("CSV file").set_input_files({"name": "reading-rooms.csv", "mimeType": "text/csv",
                                                  "buffer": WORKSTATIONS_CSV.encode()})
    screenshot(page, "technician-import")
    page.get_by_role("button", name="Import").click()
    expect(page.get_by_role("alert").filter(has_text="3 asset(s) created")).to_be_visible()
    for tag in ("WS-RAD-101", "WS-RAD-102", "WS-ED-201"):
        expect(page.get_by_role("link", name=tag)).to_be_visible()
    expect(page.get_by_role("link", name=NODE_TAG)).to_be_visible()
    screenshot(page, "technician-inventory")

    log_out(page)
    assert pages.all_errors() == []
