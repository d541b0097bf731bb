"""No critical accessibility violations (axe-core, in the browser) on the main pages."""

from __future__ import annotations

import pytest

from tests.e2e.pages import critical_accessibility_violations

pytestmark = pytest.mark.e2e


def test_login_page_has_no_critical_accessibility_violations(server, pages, axe_script):
    """The page every user meets first passes axe-core's critical rules."""
    page = pages.open(server.url, bypass_csp=True)
    page.goto("/login")
    assert critical_accessibility_violations(page, "login") == []
