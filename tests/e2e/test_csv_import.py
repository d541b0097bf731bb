"""A hospital leaving Snipe-IT imports its export unedited, then a semicolon file with day-first dates."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import unique_suffix
from tests.e2e.pages import critical_accessibility_violations, screenshot

pytestmark = pytest.mark.e2e

SNIPE_HEADER = ("Company,Asset Name,Asset Tag,Model,Model No.,Category,Manufacturer,Serial,Purchased,Cost,"
                "EOL,Order Number,Supplier,Location,Notes,Status,Checked Out,Warranty")


def snipe_export(suffix: str) -> str:
    """A Snipe-IT asset export as its "Export" button writes it, with a category it has no preset for."""
    rows = [
        f"St Mary's,Reading station,RAD-{suffix},OptiPlex 7010,D07D,Desktop,Dell,7XK2{suffix},2021-03-15,"
        f"899.00,2027-03-15,PO-3301,Dell UK,Reading room 1,,Deployed,Ann Reader,36 months",
        f"St Mary's,Thin client,TC-{suffix},Wyse 5070,N07D,Thin Client,Dell,WY{suffix},2022-01-10,350.00,,"
        f"PO-3302,Dell UK,ED triage,,Ready to Deploy,,36 months",
        f"St Mary's,Wall monitor,MON-{suffix},P2419H,P2419,Monitor,Dell,CN{suffix},2019-01-10,150.00,,,,"
        f"Room 2,\"Mounted, left wall\",Broken,,12 months",
        f"St Mary's,Old archive server,SRV-{suffix},PowerEdge R730,R730,Server,Dell,SRV{suffix},2016-05-20,"
        f"9000.00,,,,Data centre,,Archived,,60 months",
    ]
    return "\r\n".join([SNIPE_HEADER, *rows]) + "\r\n"


def test_technician_maps_and_imports_a_snipe_it_export_and_a_day_first_semicolon_file(server, pages,
                                                                                       signed_in):
    """Upload, see the preview with the preset's choices, answer one value, import; then a ';' file."""
    suffix = unique_suffix()
    page = pages.open(server.url, storage_state=signed_in("pacs.sam"))
    page.goto("/assets/import")
    page.get_by_label("CSV file").set_input_files({"name": "snipe-assets.csv", "mimeType": "text/csv",
                                                  "buffer": snipe_export(suffix).encode()})
    page.get_by_role("button", name="Import").click()

    expect(page.get_by_role("heading", level=1)).to_have_text("Map the columns of snipe-assets.csv")
    expect(page.locator("[data-import-summary]")).to_contain_text(
        "4 rows, read as comma (,)-separated. Columns and values mapped with the Snipe-IT asset export "
        "preset.")
    preview = page.locator("[data-import-preview]")
    expect(preview).to_contain_text("Reading station")
    expect(preview).to_contain_text("Mounted, left wall")
    expect(page.get_by_label("Field for column Asset Tag")).to_have_value("asset_tag")
    expect(page.get_by_label("Field for column Category")).to_have_value("kind")
    expect(page.get_by_label("Field for column Cost")).to_have_value("ignore")
    expect(page.get_by_label("Status Deployed", exact=True)).to_have_value("in_service")
    expect(page.get_by_label("Status Archived", exact=True)).to_have_value("retired")
    expect(page.get_by_label("Category Thin Client", exact=True)).to_have_value("other")
    expect(page.get_by_role("status").filter(has_text="Check before importing")).to_contain_text(
        "Category 'Thin Client' has no match: it will be imported as Other")
    screenshot(page, "import-snipe-it-preview")

    page.get_by_label("Category Thin Client", exact=True).select_option(label="Workstation")
    page.get_by_label("Field for column Supplier").select_option(label="Department")
    page.get_by_role("button", name="Update preview").click()
    expect(page.get_by_label("Field for column Supplier")).to_have_value("department")
    expect(page.get_by_label("Category Thin Client", exact=True)).to_have_value("workstation")
    expect(page.locator("[data-import-summary]")).to_contain_text("mapped with your choices on this page")
    page.get_by_role("button", name="Import", exact=True).click()

    expect(page).to_have_url(re.compile(r"/assets$"))
    expect(page.get_by_role("alert").filter(has_text="Import done: 4 asset(s) created")).to_be_visible()
    expect(page.get_by_text("Category 'Monitor' has no match: imported as Other")).to_be_visible()
    screenshot(page, "import-snipe-it-done")
    page.get_by_role("link", name=f"TC-{suffix}").click()
    expect(page.locator("body")).to_contain_text("Workstation")
    expect(page.locator("body")).to_contain_text("In service")
    expect(page.locator("body")).to_contain_text("Dell UK")

    semicolon = ("asset_tag;name;kind;status;location;purchase_date;warranty_end\r\n"
                 f"PRN-{suffix};Film printer;Printer / media burner;In service;Imaging L1;31/01/2022;"
                 f"28/02/2027\r\n")
    page.goto("/assets/import")
    page.get_by_label("CSV file").set_input_files({"name": "printers.csv", "mimeType": "text/csv",
                                                  "buffer": semicolon.encode("cp1252")})
    page.get_by_role("button", name="Import").click()
    expect(page.get_by_role("alert").filter(has_text="Nothing was imported")).to_contain_text(
        "The file was read as semicolon (;)-separated.")
    expect(page.get_by_role("alert").filter(has_text="Nothing was imported")).to_contain_text(
        "purchase_date: bad date '31/01/2022' (use YYYY-MM-DD)")
    page.get_by_label("CSV file").set_input_files({"name": "printers.csv", "mimeType": "text/csv",
                                                  "buffer": semicolon.encode("cp1252")})
    page.get_by_label("Dates in the file").select_option("dmy")
    page.get_by_role("button", name="Import").click()
    expect(page.get_by_role("alert").filter(has_text="Import done: 1 asset(s) created")).to_be_visible()
    page.get_by_role("link", name=f"PRN-{suffix}").click()
    expect(page.locator("body")).to_contain_text("2022-01-31")
    expect(page.locator("body")).to_contain_text("2027-02-28")
    expect(page.locator("body")).to_contain_text("Printer / media burner")
    assert pages.all_errors() == []


def test_the_mapping_page_has_no_critical_accessibility_violations(server, pages, signed_in, axe_script):
    """axe-core finds nothing critical on the preview with its column and value menus."""
    page = pages.open(server.url, bypass_csp=True, storage_state=signed_in("pacs.sam"))
    page.goto("/assets/import")
    page.get_by_label("CSV file").set_input_files({"name": "snipe-assets.csv", "mimeType": "text/csv",
                                                  "buffer": snipe_export(unique_suffix()).encode()})
    page.get_by_role("button", name="Import").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Map the columns of snipe-assets.csv")
    assert critical_accessibility_violations(page, "import-mapping") == []
