"""Idle logoff (HIPAA automatic logoff) as a user meets it in the browser."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import run_cli, unique_suffix
from tests.e2e.pages import PASSWORD, log_in, screenshot

pytestmark = pytest.mark.e2e

IDLE_LIMIT = 60
IDLE_PAGE = "/account/password"


def test_a_page_used_after_a_minute_idle_lands_on_login_and_returns_after_login(idle_server, pages):
    """With a one-minute idle setting, the next click after 62 s asks for the password again."""
    username = f"dr.idle.{unique_suffix().lower()}"
    run_cli(idle_server.env, "users", "create", username, "--role", "requester",
            "--full-name", "Ingrid Holm", "--department", "Radiology",
            "--email", f"{username}@hospital.example", "--password-stdin", stdin=PASSWORD + "\n")
    page = pages.open(idle_server.url)
    log_in(page, username)
    page.goto(IDLE_PAGE)
    # The server saw this page's request before goto returned: the idle minute started earlier.
    time.sleep(IDLE_LIMIT + 2)
    page.reload()
    url = urlsplit(page.url)
    assert url.path == "/login"
    assert parse_qs(url.query)["next"][0].startswith(IDLE_PAGE)
    expect(page.get_by_text("logged off after a period of inactivity")).to_be_visible()
    screenshot(page, "idle-logoff")

    log_in(page, username)
    assert urlsplit(page.url).path == IDLE_PAGE
    assert pages.all_errors() == []
