"""What a person does in the browser, written once: log in and out, wait for a page, look, check."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Page, expect

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "e2e"
AXE_JS = REPO / "node_modules" / "axe-core" / "axe.min.js"
PASSWORD = "Journey-passw0rd-e2e"
ADMIN_PASSWORD = "Kettle-orchard-drum-77"
TIMEZONE = "America/New_York"
# The people of the journeys: (username, role, full name, department).
# Those in OVERDUE joined long ago and never did their training.
PEOPLE = [
    ("dr.okafor", "requester", "Amara Okafor", "Radiology"),
    ("dr.lindqvist", "requester", "Erik Lindqvist", "Radiology"),
    ("pacs.sam", "technician", "Sam Rivera", "PACS team"),
    ("privacy.garcia", "compliance", "Elena Garcia", "Privacy office"),
]
OVERDUE = ["dr.lindqvist", "pacs.sam"]


def log_in(page: Page, username: str, password: str = PASSWORD) -> None:
    """Fill the login form and land on a page other than the login page."""
    if "/login" not in page.url:
        page.goto("/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page).not_to_have_url(re.compile(r"/login"))


def log_out(page: Page) -> None:
    """Open the account menu (through the collapsed navigation on narrow screens) and log out."""
    toggler = page.get_by_role("button", name="Toggle navigation")
    if toggler.is_visible():
        toggler.click()
    page.locator("#account-menu").click()
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/login"))
    expect(page.get_by_text("You are logged out.")).to_be_visible()


def follow_nav(page: Page, name: str) -> None:
    """Follow a navigation link, opening the bar (narrow screens) and the link's menu when it sits in one."""
    toggler = page.get_by_role("button", name="Toggle navigation")
    if toggler.is_visible():
        toggler.click()
    link = page.locator("#mainnav").get_by_role("link", name=name, exact=True).first
    if not link.is_visible():
        # CSS, not a role: the closed menu's links are hidden, and roles skip hidden elements
        in_menu = page.locator("a.dropdown-item", has_text=name)
        page.locator("#mainnav .nav-item.dropdown").filter(has=in_menu).locator(".dropdown-toggle").click()
    link.click()


def fill_new_dicom_node(page: Page, tag: str, name: str, port: int, ae_title: str) -> None:
    """Open Inventory, New asset and fill in a PACS archive on loopback ``port`` (not yet saved)."""
    page.get_by_role("link", name="Inventory").first.click()
    page.get_by_role("link", name="New asset").click()
    page.get_by_label("Asset tag").fill(tag)
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Kind").select_option(label="DICOM node")
    page.get_by_label("Location").fill("Data centre, rack B4")
    page.get_by_label("Hostname").fill("127.0.0.1")
    page.get_by_label("AE title").fill(ae_title)
    page.get_by_label("Port", exact=True).fill(str(port))
    page.get_by_label("DICOM type").select_option(label="PACS archive")
    page.get_by_label("DICOM role").select_option(label="SCP (provider)")


def move_asset(page: Page, tag: str, location: str) -> None:
    """On an asset's page, edit its location and save."""
    page.get_by_role("link", name="Edit").click()
    page.get_by_label("Location").fill(location)
    page.get_by_role("button", name="Save changes").click()
    expect(page.get_by_role("alert").filter(has_text=f"Asset {tag} saved.")).to_be_visible()


def screenshot(page: Page, name: str) -> Path:
    """Save what the user sees now as test-artifacts/e2e/<name>.png (the whole page)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def reload_until(page: Page, ready: Callable[[Page], bool], what: str, timeout: float,
                 interval: float = 1.0) -> None:
    """Reload ``page`` until ``ready(page)`` is true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if ready(page):
            return
        if time.monotonic() >= deadline:
            screenshot(page, "timeout-" + re.sub(r"[^a-z0-9]+", "-", what.lower()).strip("-"))
            raise AssertionError(f"waited {timeout:.0f} s for {what} on {page.url}")
        time.sleep(interval)
        page.reload()


def critical_accessibility_violations(page: Page, name: str) -> list[str]:
    """Run axe-core in ``page``; save its full findings as JSON and return the critical ones, described."""
    page.add_script_tag(path=str(AXE_JS))
    results = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"axe-{name}.json").write_text(json.dumps(results["violations"], indent=2))
    found = []
    for violation in results["violations"]:
        if violation["impact"] != "critical":
            continue
        targets = "; ".join(" ".join(map(str, node["target"])) for node in violation["nodes"][:5])
        found.append(f"{violation['id']}: {violation['help']} at {targets}")
    return found
