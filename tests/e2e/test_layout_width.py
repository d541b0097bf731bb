"""Every page fits the screen: each role's pages at 1280 px, the requester's pages on a 390 px phone."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page

from tests.e2e.pages import log_in, screenshot

pytestmark = pytest.mark.e2e

# Pages reached by other means than the navigation bar, per role ({ticket} is seeded).
EXTRA = {
    "requester": ["/", "/tickets/{ticket}", "/notifications", "/account", "/account/password",
                  "/account/notifications"],
    "technician": ["/", "/assets/new", "/assets/import", "/assets/warranty", "/notifications"],
    "compliance": ["/", "/audit/pacs/watchlist", "/retention/holds/new", "/training/courses",
                   "/notifications"],
    "admin": ["/", "/admin/users/new", "/helpdesk/sla", "/notifications"],
}
USERS = {"requester": "dr.okafor", "technician": "pacs.sam", "compliance": "privacy.garcia"}


def overflow(page: Page) -> int:
    """How many CSS pixels the page is wider than the window (0 when it fits)."""
    return page.evaluate("document.documentElement.scrollWidth - window.innerWidth")


def nav_paths(page: Page) -> list[str]:
    """Every address the navigation bar offers, menus included."""
    hrefs = page.locator("#mainnav a[href^='/']").evaluate_all(
        "links => links.map(a => a.getAttribute('href'))")
    return sorted(set(hrefs))


def account_menu_on_screen(page: Page) -> bool:
    """Whether the account menu (with "Log out") is inside the window."""
    box = page.locator("#account-menu").bounding_box()
    return box is not None and box["x"] >= 0 and box["x"] + box["width"] <= page.evaluate("window.innerWidth")


def check_pages(page: Page, paths: list[str], name: str) -> list[str]:
    """The pages among ``paths`` that scroll sideways, with by how much."""
    wide = []
    for path in paths:
        response = page.goto(path)
        status = response.status if response is not None else None
        assert status == 200, f"{path} answered {status}"
        if overflow(page) > 0:
            screenshot(page, f"too-wide-{name}-{path.strip('/').replace('/', '-') or 'home'}")
            wide.append(f"{path}: {overflow(page)} px too wide")
    return wide


@pytest.mark.parametrize("role", ["requester", "technician", "compliance", "admin"])
def test_every_page_of_each_role_fits_1280_px_with_log_out_on_screen(role, server, pages, signed_in,
                                                                     requester_ticket):
    if role == "admin":
        page = pages.open(server.url, width=1280)
        log_in(page, "admin", server.admin_password)
    else:
        page = pages.open(server.url, width=1280, storage_state=signed_in(USERS[role]))
    page.goto("/")
    assert account_menu_on_screen(page), "the account menu is off-screen at 1280 px"
    paths = nav_paths(page) + [p.format(ticket=requester_ticket) for p in EXTRA[role]]
    assert check_pages(page, paths, role) == []
    page.set_viewport_size({"width": 1366, "height": 800})
    page.goto("/")
    assert overflow(page) <= 0 and account_menu_on_screen(page)


def test_the_requesters_pages_fit_a_390_px_phone(server, pages, signed_in, requester_ticket):
    page = pages.open(server.url, width=390, height=844, storage_state=signed_in("dr.okafor"))
    page.goto("/")
    paths = nav_paths(page) + [p.format(ticket=requester_ticket) for p in EXTRA["requester"]]
    assert "/training/mine" in paths and "/tickets/new" in paths
    page.goto("/training/mine")
    paths.append(page.locator("#my-training a").first.get_attribute("href") or "")
    assert check_pages(page, paths, "phone") == []
