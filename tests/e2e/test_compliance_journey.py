"""A compliance officer audits the day's access, pulls the PDF report, and checks training."""

from __future__ import annotations

import io
import re
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Page, expect
from pypdf import PdfReader

from tests.e2e.conftest import run_cli, unique_suffix
from tests.e2e.pages import (
    OVERDUE,
    TIMEZONE,
    fill_new_dicom_node,
    follow_nav,
    log_in,
    log_out,
    move_asset,
    screenshot,
)

pytestmark = pytest.mark.e2e

REPORT_WAIT_MS = 90_000


def search_audit(page: Page, **filters: str) -> None:
    """Fill the audit trail's filters (by label) and search."""
    follow_nav(page, "Audit trail")
    for label, value in filters.items():
        field = page.get_by_label(label, exact=True)
        if field.evaluate("el => el.tagName") == "SELECT":
            field.select_option(value)
        else:
            field.fill(value)
    page.get_by_role("button", name="Search").click()


def technician_adds_moves_and_loses_a_node(server, pages, signed_in, orthanc) -> str:
    """pacs.sam adds a node and moves it; the CLI finds it down, then answering again: its tag."""
    tag = f"PACS-CA-{unique_suffix()}"
    page = pages.open(server.url, storage_state=signed_in("pacs.sam"))
    page.goto("/")
    fill_new_dicom_node(page, tag, "Cardiology archive", orthanc.port, orthanc.aet)
    page.get_by_role("button", name="Create asset").click()
    expect(page).to_have_url(re.compile(f"/assets/{tag}$"))
    move_asset(page, tag, "Data centre, rack C1")
    orthanc.stop()
    run_cli(server.env, "inventory", "verify", "--asset", tag, status=1)
    orthanc.start()
    run_cli(server.env, "inventory", "verify", "--asset", tag)
    return tag


def test_compliance_officer_audits_ticket_views_node_changes_pdf_and_training(server, pages, signed_in,
                                                                              requester_ticket, orthanc):
    """The requester's ticket views, the node's history, the access-audit PDF, overdue training."""
    ticket = requester_ticket
    viewer = pages.open(server.url, storage_state=signed_in("dr.okafor"))
    viewer.goto(f"/tickets/{ticket}")
    expect(viewer.get_by_role("heading", level=1)).to_contain_text(ticket)
    node = technician_adds_moves_and_loses_a_node(server, pages, signed_in, orthanc)

    page = pages.open(server.url)
    log_in(page, "privacy.garcia")

    search_audit(page, User="dr.okafor", Action="ticket.view")
    events = page.locator("#events tbody tr")
    expect(events.filter(has_text=ticket).first).to_be_visible()
    expect(events.filter(has_text=ticket).first).to_contain_text("ticket.view")
    expect(events.filter(has_not_text="dr.okafor")).to_have_count(0)
    screenshot(page, "compliance-audit-ticket-views")

    search_audit(page, **{"Object id": node})
    for action in ("asset.create", "asset.update"):
        expect(events.filter(has_text=action).filter(has_text="pacs.sam").first).to_be_visible()
    expect(events.filter(has_text="node.down")).not_to_have_count(0)
    expect(events.filter(has_text="node.recovered")).not_to_have_count(0)
    screenshot(page, "compliance-audit-node-changes")

    today = datetime.now(ZoneInfo(TIMEZONE)).date().isoformat()
    page.get_by_role("link", name="Reports").first.click()
    page.get_by_label("Report", exact=True).select_option(label="Access audit report")
    page.get_by_label("From", exact=True).fill(today)
    page.get_by_label("To", exact=True).fill(today)
    screenshot(page, "compliance-reports")
    page.get_by_role("button", name="Generate PDF").click()
    download_link = page.get_by_role("link", name="Download PDF")
    expect(download_link).to_be_visible(timeout=REPORT_WAIT_MS)
    screenshot(page, "compliance-report-ready")
    with page.expect_download() as download:
        download_link.click()
    pdf = download.value.path().read_bytes()
    assert pdf.startswith(b"%PDF-")
    text = " ".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf)).pages)
    text = re.sub(r"\s+", " ", text)
    assert "dr.okafor" in text or "Amara Okafor" in text
    assert ticket in text

    follow_nav(page, "Training")
    overdue = page.locator("#overdue tbody tr")
    for username in OVERDUE:
        expect(overdue.filter(has_text=username).filter(has_text="Overdue").first).to_be_visible()
    expect(overdue.filter(has_text="dr.okafor")).to_have_count(0)
    screenshot(page, "compliance-training-matrix")

    log_out(page)
    assert pages.all_errors() == []
