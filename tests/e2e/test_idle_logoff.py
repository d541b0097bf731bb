"""Idle logoff (HIPAA automatic logoff) as a user meets it in the browser."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import expect

from tests.e2e.pages import log_in, screenshot

pytestmark = pytest.mark.e2e

IDLE_LIMIT = 60


def test_a_page_used_after_a_minute_idle_lands_on_login_and_returns_after_login(idle_session):
    """With a one-minute idle setting, the next click after 61 s asks for the password again."""
    waited = time.monotonic() - idle_session.idle_since
    time.sleep(max(0.0, IDLE_LIMIT + 2 - waited))
    page = idle_session.page
    page.reload()
    url = urlsplit(page.url)
    assert url.path == "/login"
    assert parse_qs(url.query)["next"][0].startswith(idle_session.path)
    expect(page.get_by_text("logged off after a period of inactivity")).to_be_visible()
    screenshot(page, "idle-logoff")

    log_in(page, idle_session.username)
    assert urlsplit(page.url).path == idle_session.path
