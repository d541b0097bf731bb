"""No critical accessibility violations (axe-core, run in the browser) on the main pages."""

from __future__ import annotations

import pytest

from tests.e2e.pages import critical_accessibility_violations, screenshot

pytestmark = pytest.mark.e2e

# (name, who looks at it, address); {node} and {ticket} come from the journeys.
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
FROM_JOURNEYS = {"ticket": "requester_ticket", "node": "node_tag"}


@pytest.mark.parametrize(("name", "username", "path"), PAGES, ids=[p[0] for p in PAGES])
def test_page_has_no_critical_accessibility_violations(name, username, path, server, pages, signed_in,
                                                       journeys, axe_script):
    """axe-core finds nothing critical on the page as its user sees it."""
    path = path.format(**{key: journeys.need(left) for key, left in FROM_JOURNEYS.items()
                          if f"{{{key}}}" in path})
    page = pages.open(server.url, bypass_csp=True,
                      storage_state=signed_in(username) if username else None)
    response = page.goto(path)
    assert response is not None and response.status == 200, f"{path} answered {response and response.status}"
    screenshot(page, f"axe-{name}")
    assert critical_accessibility_violations(page, name) == []
