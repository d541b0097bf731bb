"""A privacy officer records one training session for attendees picked by role and by name."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.pages import critical_accessibility_violations, follow_nav, screenshot

pytestmark = pytest.mark.e2e


def test_privacy_officer_records_a_session_for_attendees_picked_by_role_and_search(server, pages, signed_in):
    page = pages.open(server.url, storage_state=signed_in("privacy.garcia"))
    page.goto("/")
    follow_nav(page, "Training")
    page.get_by_role("link", name="Record a session").click()
    expect(page).to_have_url(re.compile(r"/training/sessions/new$"))
    page.get_by_label("Course").select_option(label="HIPAA Privacy")
    attendees = page.locator("#attendees [data-attendee]")

    page.get_by_label("Role", exact=True).select_option(label="Technician")
    expect(attendees.filter(has_text="Sam Rivera")).to_be_visible()
    expect(attendees.filter(has_text="Amara Okafor")).to_be_hidden()
    page.get_by_role("button", name="Select shown").click()
    expect(page.get_by_text("1 selected")).to_be_visible()

    page.get_by_label("Role", exact=True).select_option(label="Any")
    page.get_by_label("Search").fill("okafor")
    expect(attendees.filter(has_text="Amara Okafor")).to_be_visible()
    expect(attendees.filter(has_text="Erik Lindqvist")).to_be_hidden()
    page.get_by_role("button", name="Select shown").click()
    expect(page.get_by_text("2 selected")).to_be_visible()

    page.get_by_label("Trainer (optional)").fill("Elena Garcia")
    page.get_by_label(re.compile("^The trainee attested")).check()
    screenshot(page, "compliance-training-session-form")
    page.get_by_role("button", name="Record the session").click()

    expect(page).to_have_url(re.compile(r"/training/sessions/\d+$"))
    recorded = page.locator("#recorded tbody tr")
    expect(recorded).to_have_count(2)
    expect(recorded.filter(has_text="pacs.sam")).to_have_count(1)
    expect(recorded.filter(has_text="dr.okafor")).to_have_count(1)
    expect(recorded.filter(has_text="dr.lindqvist")).to_have_count(0)
    screenshot(page, "compliance-training-session-recorded")
    assert pages.all_errors() == []


def test_privacy_officer_back_loads_past_completions_from_csv(server, pages, signed_in, tmp_path):
    page = pages.open(server.url, storage_state=signed_in("privacy.garcia"))
    page.goto("/training")
    page.get_by_role("link", name="Import past completions").click()
    bad = tmp_path / "bad.csv"
    bad.write_text("username,course,completed_on\ndr.lindqvist,break-the-glass,2019-13-01\n")
    page.get_by_label("CSV file").set_input_files(str(bad))
    page.get_by_role("button", name="Check the file").click()
    expect(page.locator("#problems")).to_contain_text("Row 2")
    expect(page.locator("#problems")).to_contain_text("completed_on")
    good = tmp_path / "past.csv"
    good.write_text('email,course,completed_on,notes\n'
                    'dr.lindqvist@hospital.example,"Emergency ""break-the-glass"" access procedure",'
                    '05/01/2019,Sign-in sheet\n')
    page.get_by_label("CSV file").set_input_files(str(good))
    page.get_by_role("button", name="Check the file").click()
    expect(page.locator("#preview tbody tr")).to_have_count(1)
    expect(page.locator("#preview")).to_contain_text("Will be recorded")
    screenshot(page, "compliance-training-import-preview")
    page.get_by_role("button", name="Import 1 completion").click()
    expect(page).to_have_url(re.compile(r"/training$"))
    expect(page.get_by_text("Imported 1 completion(s)")).to_be_visible()
    assert pages.all_errors() == []


@pytest.mark.parametrize("path", ["/training/sessions/new", "/training/import"])
def test_bulk_training_pages_have_no_critical_accessibility_violations(path, server, pages, signed_in,
                                                                       axe_script):
    page = pages.open(server.url, bypass_csp=True, storage_state=signed_in("privacy.garcia"))
    response = page.goto(path)
    assert response is not None and response.status == 200
    assert critical_accessibility_violations(page, path.strip("/").replace("/", "-")) == []
