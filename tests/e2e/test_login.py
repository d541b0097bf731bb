"""Signing in and out in a real browser against the served app."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.pages import log_in, log_out, screenshot

pytestmark = pytest.mark.e2e


def test_a_visitor_is_sent_to_login_then_back_to_the_page_and_logs_out(server, pages):
    """The login page guards every page, a wrong password is refused, logging out ends the session."""
    page = pages.open(server.url)
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login\?next=%2F$"))
    screenshot(page, "login")
    for label in ("Username", "Password"):
        expect(page.get_by_label(label)).not_to_have_attribute("placeholder", "None")

    page.get_by_label("Username").fill("dr.okafor")
    page.get_by_label("Password").fill("not-the-password-at-all")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator(".invalid-feedback")).to_be_visible()
    expect(page).to_have_url(re.compile(r"/login"))

    log_in(page, "dr.okafor")
    expect(page).to_have_url(f"{server.url}/")
    expect(page.get_by_role("navigation", name="Main navigation")).to_contain_text("Amara Okafor")
    screenshot(page, "home-requester")

    log_out(page)
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login"))
    assert pages.all_errors() == []
