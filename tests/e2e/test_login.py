"""Signing in and out in a real browser against the served app."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import Server, install_instance, serving
from tests.e2e.pages import log_in, log_out, screenshot

pytestmark = pytest.mark.e2e

CHOSEN = "Lantern-harbour-violet-42"


@pytest.fixture
def fresh_install(tmp_path: Path) -> Iterator[Server]:
    """A new installation whose administrator has not logged in yet."""
    installed = install_instance(tmp_path / "instance", first_login_done=False, log_name="server-login.log")
    with serving(installed) as running:
        yield running


def test_the_administrator_logs_in_with_the_printed_password_changes_it_and_logs_out(fresh_install, pages):
    """The login page guards every page, a wrong password is refused, the printed password is replaced."""
    server = fresh_install
    page = pages.open(server.url)
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login\?next=%2F$"))
    for label in ("Username", "Password"):
        expect(page.get_by_label(label)).not_to_have_attribute("placeholder", "None")
    screenshot(page, "login")

    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill("not-the-password-at-all")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator(".invalid-feedback")).to_be_visible()
    expect(page).to_have_url(re.compile(r"/login"))

    log_in(page, "admin", server.admin_password)
    expect(page.get_by_text("Your password was set for you")).to_be_visible()
    page.goto("/")
    expect(page.get_by_text("Your password was set for you")).to_be_visible()  # nothing else until it changes
    page.get_by_label("Current password").fill(server.admin_password)
    page.get_by_label("New password", exact=True).fill(CHOSEN)
    page.get_by_label("Repeat new password").fill(CHOSEN)
    page.get_by_role("button", name="Change password").click()
    page.goto("/")
    expect(page).to_have_url(f"{server.url}/")
    expect(page.get_by_role("navigation", name="Main navigation")).to_contain_text("PACS Desk administrator")
    screenshot(page, "home-admin")

    log_out(page)
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login"))
    log_in(page, "admin", CHOSEN)
    expect(page).to_have_url(f"{server.url}/")
    log_out(page)
    assert pages.all_errors() == []
