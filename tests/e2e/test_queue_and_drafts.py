"""The queue worked in bulk and through a saved view; a draft that survives the idle logoff."""

from __future__ import annotations

import re
import time
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import run_cli, seed_ticket, unique_suffix
from tests.e2e.pages import PASSWORD, log_in, screenshot

pytestmark = pytest.mark.e2e

IDLE_LIMIT = 60


def test_technician_changes_selected_tickets_at_once_and_keeps_a_saved_view(server, pages, signed_in):
    """Select all rows of a search, set priority and assignee in one go, sort, save, reopen the view."""
    word = f"bulkcheck{unique_suffix().lower()}"
    numbers = [seed_ticket(server.env, "dr.okafor", f"{word} {name} station freezes", "Freezes often.")
               for name in ("Alpha", "Bravo", "Charlie")]
    page = pages.open(server.url, storage_state=signed_in("pacs.sam"))
    page.goto(f"/tickets?q={word}&status=all")
    rows = page.locator("#queue-table tbody tr")
    expect(rows).to_have_count(3)
    page.get_by_label("Select all tickets on this page").check()
    expect(page.locator("#bulk-selected")).to_have_text("3 selected")
    page.locator("#bulk-priority").select_option("P1")
    page.locator("#bulk-assignee").select_option(label="Sam Rivera")
    screenshot(page, "queue-bulk-selected")
    page.get_by_role("button", name="Apply to selected").click()
    expect(page.get_by_text("3 tickets changed.")).to_be_visible()
    for number in numbers:
        row = rows.filter(has=page.get_by_role("link", name=number, exact=True))
        expect(row).to_contain_text("P1")
        expect(row).to_contain_text("Sam Rivera")

    page.locator("a.sort-link[data-sort='title']").click()
    expect(page.locator("th[aria-sort='ascending'] a[data-sort='title']")).to_be_visible()
    page.locator("a.sort-link[data-sort='title']").click()
    expect(page.locator("th[aria-sort='descending'] a[data-sort='title']")).to_be_visible()
    expect(rows.first).to_contain_text("Charlie")
    view_name = f"Freezes {word[-6:]}"
    page.locator("#saved-views summary").click()
    page.get_by_label("View name").fill(view_name)
    page.get_by_role("button", name="Save view").click()
    expect(page.get_by_text(f"View “{view_name}” saved.")).to_be_visible()

    page.goto("/tickets")
    page.get_by_role("link", name=view_name).click()
    expect(rows).to_have_count(3)
    expect(rows.first).to_contain_text("Charlie")
    expect(page.get_by_role("heading", level=1)).to_contain_text(view_name)
    expect(page.locator("#queue-counts [data-count='active']")).to_have_text(re.compile(r"^\d+$"))
    screenshot(page, "queue-saved-view")
    assert pages.all_errors() == []


def test_a_draft_ticket_survives_the_idle_logoff_and_is_gone_once_filed(idle_server, pages):
    """Warned before, logged off after a minute, the typed ticket is back after logging in again."""
    username = f"dr.draft.{unique_suffix().lower()}"
    run_cli(idle_server.env, "users", "create", username, "--role", "requester",
            "--full-name", "Dana Draft", "--department", "Radiology",
            "--email", f"{username}@hospital.example", "--password-stdin", stdin=PASSWORD + "\n")
    page = pages.open(idle_server.url)
    log_in(page, username)
    page.goto("/tickets/new")
    started = time.monotonic()
    page.get_by_label("Title").fill("Hanging protocol lost after update")
    page.get_by_label("What happened?").fill("Since this morning the mammo hanging protocol is gone.")
    page.get_by_label("Location").fill("Breast imaging, room 4")

    warning = page.locator("#idle-warning")
    expect(warning).to_contain_text("You will be logged off", timeout=(IDLE_LIMIT - 20) * 1000)
    expect(page.get_by_role("button", name="Stay signed in")).to_be_visible()
    screenshot(page, "idle-warning")
    expect(warning).to_contain_text("You were logged off", timeout=(IDLE_LIMIT + 10) * 1000)
    time.sleep(max(IDLE_LIMIT + 2 - (time.monotonic() - started), 0))
    page.get_by_role("button", name="Log in again").click()
    expect(page).to_have_url(re.compile(r"/login\?next="))
    expect(page.get_by_text("logged off after a period of inactivity")).to_be_visible()

    log_in(page, username)
    assert urlsplit(page.url).path == "/tickets/new"
    expect(page.get_by_text("Your unsent draft was restored.")).to_be_visible()
    expect(page.get_by_label("Title")).to_have_value("Hanging protocol lost after update")
    expect(page.get_by_label("What happened?")).to_have_value(
        "Since this morning the mammo hanging protocol is gone.")
    expect(page.get_by_label("Location")).to_have_value("Breast imaging, room 4")
    screenshot(page, "draft-restored")
    page.get_by_role("button", name="File ticket").click()
    expect(page).to_have_url(re.compile(r"/tickets/PD-\d+$"))
    expect(page.locator("#ticket-description")).to_contain_text("hanging protocol is gone")
    page.wait_for_load_state("load")

    page.goto("/tickets/new")
    expect(page.get_by_label("Title")).to_have_value("")
    expect(page.get_by_text("Your unsent draft was restored.")).to_be_hidden()
    assert pages.all_errors() == []
