"""Times carry their zone, so the repeated hour of a daylight-saving change is never ambiguous.

America/New_York in 2026: clocks go forward on 8 March (02:00 EST becomes 03:00 EDT) and back
on 1 November (02:00 EDT becomes 01:00 EST, so 01:30 happens twice).
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from pathlib import Path

import time_machine

from audit import record
from audit.reports import services
from core.auth.models import User
from core.extensions import db
from core.timeutil import format_local
from tests.audit.reports.conftest import pdf_text

FIRST_0130 = datetime(2026, 11, 1, 5, 30, tzinfo=UTC)    # 01:30 EDT
SECOND_0130 = datetime(2026, 11, 1, 6, 30, tzinfo=UTC)   # 01:30 EST, an hour later
BEFORE_SPRING = datetime(2026, 3, 8, 6, 59, tzinfo=UTC)  # 01:59 EST
AFTER_SPRING = datetime(2026, 3, 8, 7, 0, tzinfo=UTC)    # 03:00 EDT, a minute later
MOMENTS = (BEFORE_SPRING, AFTER_SPRING, FIRST_0130, SECOND_0130)
SHOWN = ("2026-03-08 01:59", "EST"), ("2026-03-08 03:00", "EDT"), ("2026-11-01 01:30", "EDT"), \
    ("2026-11-01 01:30", "EST")


def _seed_logins(app, user: User) -> None:
    """One login audited at each moment."""
    for moment in MOMENTS:
        with app.app_context(), time_machine.travel(moment, tick=False):
            record("user.login", user=db.session.get(User, user.id), client_address="10.0.0.5")
            db.session.commit()


def test_the_shared_formatter_names_the_zone_on_both_sides_of_each_change(app):
    with app.app_context():
        assert [format_local(m) for m in MOMENTS] == [f"{day} {zone}" for day, zone in SHOWN]
        assert format_local(SECOND_0130, "%H:%M:%S") == "01:30:00 EST"
        assert format_local(SECOND_0130, "%Y-%m-%d") == "2026-11-01"   # a date alone has no zone


def test_audit_page_and_csv_export_tell_the_two_0130s_apart(app, client, login_as, make_user):
    _seed_logins(app, make_user("technician", "sam.tech"))
    login_as("compliance", "auditor")

    page = client.get("/audit?action=user.login&date_from=2026-03-01&date_to=2026-11-15").data.decode()
    for day, zone in SHOWN:
        assert f"{day}:00 {zone}" in page

    export = client.get("/audit/export.csv?action=user.login&date_from=2026-03-01&date_to=2026-11-15")
    rows = list(csv.reader(io.StringIO(export.data.decode())))
    local_times = sorted(row[1] for row in rows[1:])
    assert local_times == sorted(f"{day}:00 {zone}" for day, zone in SHOWN)


def test_ticket_csv_export_carries_the_zone(app, client, login_as, make_user):
    from helpdesk.models import Category
    from helpdesk.services import NewTicket, create_ticket

    requester = make_user("requester", "dr.okafor")
    for moment in (FIRST_0130, SECOND_0130):
        with app.app_context(), time_machine.travel(moment, tick=False):
            category = db.session.query(Category).first()
            create_ticket(NewTicket(title=f"Priors missing {moment:%H%M}", description="CT priors absent.",
                                    category_id=category.id, impact="one", urgency="hours"),
                          db.session.get(User, requester.id), [])
            db.session.commit()
    login_as("technician", "sam.tech")

    export = client.get("/tickets/export.csv?status=all")
    rows = list(csv.DictReader(io.StringIO(export.data.decode())))
    assert sorted(row["Created"] for row in rows) == ["2026-11-01 01:30 EDT", "2026-11-01 01:30 EST"]


def test_access_audit_pdf_prints_each_time_with_its_zone_uncut(app, make_user, tmp_path: Path):
    _seed_logins(app, make_user("technician", "sam.tech"))
    with app.app_context():
        request = services.validate_request("access-audit", "2026-03-01", "2026-11-15", None, None)
        pdf = services.build_from_cli(request)
        db.session.commit()

    text = pdf_text(pdf, tmp_path)

    after_hours = text[text.index("Access outside business hours"):]
    for day, zone in SHOWN:
        assert f"{day}:00 {zone}" in after_hours
    assert "EST…" not in text and "ED…" not in text and "ES…" not in text
