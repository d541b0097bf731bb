"""A radiologist files a ticket with a screenshot, follows it, replies, and cannot see anyone else's."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.pages import log_in, log_out, screenshot

pytestmark = pytest.mark.e2e

PHONE = {"width": 390, "height": 844}
TICKET_URL = re.compile(r"/tickets/(PD-\d+)$")


def file_ticket(page: Page, title: str, category: str, description: str,
                attachment: dict | None = None) -> str:
    """File a ticket through the New ticket page and return its number."""
    page.get_by_role("link", name="New ticket").first.click()
    expect(page.get_by_role("heading", name="New ticket")).to_be_visible()
    page.get_by_label("Title").fill(title)
    page.get_by_label("Category").select_option(label=category)
    page.get_by_label("What happened?").fill(description)
    if attachment:
        page.get_by_label("Attachments").set_input_files(attachment)
    page.get_by_role("button", name="File ticket").click()
    expect(page).to_have_url(TICKET_URL)
    match = TICKET_URL.search(page.url)
    assert match
    expect(page.get_by_role("alert").filter(has_text=f"Ticket {match.group(1)} filed")).to_be_visible()
    return match.group(1)


def test_requester_files_a_ticket_with_a_screenshot_follows_it_and_replies(server, pages, signed_in):
    """Filing, My tickets with its service level, a reply, the attachment back; others' tickets hidden."""
    other = pages.open(server.url, storage_state=signed_in("dr.lindqvist"))
    other.goto("/")
    others_ticket = file_ticket(other, "Hanging protocol lost on reading station 4",
                                "Viewer or workstation problem",
                                "The MR hanging protocol resets after every restart.")

    page = pages.open(server.url)
    log_in(page, "dr.okafor")
    page.get_by_role("link", name="New ticket").first.click()
    screenshot(page, "requester-new-ticket")
    picture = {"name": "viewer-error.png", "mimeType": "image/png", "buffer": page.screenshot()}
    page.goto("/")
    number = file_ticket(page, "Priors missing for CT chest in reading room 2", "Prior studies missing",
                         "Comparison studies from last year do not load in the viewer.", picture)
    attachment = page.get_by_role("link", name="viewer-error.png").first
    expect(attachment).to_be_visible()
    with page.expect_download() as download:
        attachment.click()
    assert download.value.path().read_bytes() == picture["buffer"]
    screenshot(page, "requester-ticket-filed")

    page.get_by_role("link", name="My tickets").first.click()
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name=number))
    expect(row).to_contain_text("Priors missing for CT chest")
    service_level = row.get_by_role("cell").last
    expect(service_level).not_to_have_text("—")
    expect(service_level).to_contain_text(re.compile(r"\d"))
    expect(page.get_by_role("link", name=others_ticket)).to_have_count(0)
    screenshot(page, "requester-my-tickets")

    row.get_by_role("link", name=number).click()
    page.get_by_label("Reply").fill("It happens on every CT chest since this morning.")
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#timeline")).to_contain_text("It happens on every CT chest since this morning.")
    screenshot(page, "requester-reply")

    response = page.goto(f"/tickets/{others_ticket}")
    assert response is not None and response.status == 404
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    expect(page.get_by_text("Hanging protocol lost")).to_have_count(0)
    screenshot(page, "requester-other-ticket-not-found")

    log_out(page)
    assert pages.all_errors() == []


def open_from_menu(page: Page, name: str) -> None:
    """Open a page through the navigation collapsed behind its toggle button, as on a phone."""
    page.get_by_role("button", name="Toggle navigation").click()
    page.locator("#mainnav").get_by_role("link", name=name).click()


def test_new_ticket_and_my_tickets_are_usable_on_a_phone(server, pages, signed_in):
    """At 390 px wide the menu opens, the form fits the screen and files a ticket, My tickets shows it."""
    page = pages.open(server.url, storage_state=signed_in("dr.okafor"), **PHONE)
    page.goto("/")
    open_from_menu(page, "New ticket")
    expect(page).to_have_url(re.compile(r"/tickets/new$"))
    fits = "() => document.documentElement.scrollWidth <= window.innerWidth"
    assert page.evaluate(fits), "the new-ticket page scrolls sideways at 390 px"
    screenshot(page, "phone-390-new-ticket")
    page.get_by_label("Title").fill("Dictation microphone not detected in ED reading room")
    page.get_by_label("Category").select_option(label="Hardware")
    page.get_by_label("What happened?").fill("PowerScribe says no microphone since the update.")
    submit = page.get_by_role("button", name="File ticket")
    submit.scroll_into_view_if_needed()
    submit.click()
    expect(page).to_have_url(TICKET_URL)
    match = TICKET_URL.search(page.url)
    assert match

    open_from_menu(page, "My tickets")
    expect(page).to_have_url(re.compile(r"/my/tickets$"))
    assert page.evaluate(fits), "My tickets scrolls sideways at 390 px"
    link = page.get_by_role("link", name=match.group(1))
    expect(link).to_be_visible()
    screenshot(page, "phone-390-my-tickets")
    link.click()
    expect(page).to_have_url(TICKET_URL)
    assert pages.all_errors() == []
