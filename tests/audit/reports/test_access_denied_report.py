"""Repeated refusals appear among the access-audit report's exceptions."""

from __future__ import annotations

import re

from core.timeutil import to_local, utcnow
from tests.audit.reports.test_access_audit import build, section


def test_repeated_denials_are_an_exception_in_the_access_audit_report(app, client, auth, login_as,
                                                                      tmp_path):
    login_as("technician", "curious.tech")
    for path in ("/audit", "/audit/pacs", "/retention", "/training"):
        assert client.get(path).status_code == 403
    auth.logout()
    login_as("technician", "once.tech")
    assert client.get("/audit").status_code == 403
    with app.app_context():
        today = to_local(utcnow()).date().isoformat()
    text = build(app, tmp_path, today, today)
    denials = section(text, "Repeated access denials", "Access outside business hours")
    assert re.search(r"curious\.tech\s+127\.0\.0\.1\s+4\s+4\s", denials), denials
    assert "once.tech" not in denials
    assert len(re.findall(r"curious\.tech\s+technician\s+access\.denied", denials)) == 4, denials


def test_the_appendix_names_objects_and_details_in_words(app, make_user, seed_event, tmp_path):
    sam = make_user("technician", "pacs.sam", full_name="Sam Patel")
    seed_event("2026-03-10 10:00", "ticket.update", user=sam, object_type="ticket", object_id="PD-000038",
               details={"changes": {"assignee": [None, "pacs.sam"], "status": ["open", "waiting"]}})
    seed_event("2026-03-10 10:05", "audit.search", user=sam, object_type="audit_event", object_id=None,
               details={"filters": {"username": "okafor"}, "shown": 0})
    text = build(app, tmp_path, "2026-03-01", "2026-03-31")
    appendix = text[text.index("Appendix: event detail"):]
    assert "Ticket PD-000038" in appendix and "Audit trail" in appendix
    assert "Assigned to: (none) → Sam Patel (pacs.sam); Status:" in appendix
    assert "Filters: Username: okafor; Shown: 0" in appendix
    for raw in ("None", "audit_event:", "[", "{", "'"):
        assert raw not in appendix, raw
