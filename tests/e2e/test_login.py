"""Signing in and out in a real browser against the served app."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.pages import log_in, log_out, screenshot

pytestmark = pytest.mark.e2e


def test_the_administrator_logs_in_with_the_password_setup_printed_and_logs_out(server, pages):
    """The login page guards every page, a wrong password is refused, logging out ends the session."""
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
    expect(page).to_have_url(f"{server.url}/")
    expect(page.get_by_role("navigation", name="Main navigation")).to_contain_text("PACS Desk administrator")
    screenshot(page, "home-admin")

    log_out(page)
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login"))
    assert pages.all_errors() == []
