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
