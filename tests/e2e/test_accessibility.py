"""No critical accessibility violations (axe-core, run in the browser) on the main pages."""

from __future__ import annotations

import pytest

from tests.e2e.pages import critical_accessibility_violations, screenshot

pytestmark = pytest.mark.e2e

# (name, who looks at it, address); {ticket} and {node} are seeded for the test that needs them.
PAGES = [
    ("login", None, "/login"),
    ("new-ticket", "dr.okafor", "/tickets/new"),
    ("my-tickets", "dr.okafor", "/my/tickets"),
    ("ticket", "dr.okafor", "/tickets/{ticket}"),
    ("queue", "pacs.sam", "/tickets"),
    ("asset", "pacs.sam", "/assets/{node}"),
    ("audit-search", "privacy.garcia", "/audit?username=dr.okafor"),
    ("reports", "privacy.garcia", "/reports"),
]
SEEDED = {"ticket": "requester_ticket", "node": "checked_node"}


@pytest.mark.parametrize(("name", "username", "path"), PAGES, ids=[p[0] for p in PAGES])
def test_page_has_no_critical_accessibility_violations(name, username, path, server, pages, signed_in,
                                                       axe_script, request):
    """axe-core finds nothing critical on the page as its user sees it."""
    path = path.format(**{key: request.getfixturevalue(fixture) for key, fixture in SEEDED.items()
                          if f"{{{key}}}" in path})
    page = pages.open(server.url, bypass_csp=True,
                      storage_state=signed_in(username) if username else None)
    response = page.goto(path)
    assert response is not None and response.status == 200, f"{path} answered {response and response.status}"
    assert page.url == f"{server.url}{path}", f"{path} led to {page.url}"
    screenshot(page, f"axe-{name}")
    assert critical_accessibility_violations(page, name) == []
