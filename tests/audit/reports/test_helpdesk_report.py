"""The help desk PDF: volumes by category and priority, SLA met, percentiles, backlog, assets."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import select

from audit.reports import services
from core.extensions import db
from helpdesk.models import Category, Ticket
from inventory.models import Asset
from tests.audit.reports.conftest import local, pdf_text
from tests.helpers import fixture_event


def add_ticket(category_id: int, created: str, priority: str = "P2", responded_after: int | None = None,
               resolved_after: int | None = None, asset_id: int | None = None) -> None:
    """A ticket with its SLA due times as the help desk sets them (P2: 1 h response, 8 h resolution)."""
    at = local(created)
    db.session.add(Ticket(
        title="Viewer slow", category_id=category_id, priority=priority, asset_id=asset_id,
        status="resolved" if resolved_after else "open", created_at=at, updated_at=at,
        response_due_at=at + timedelta(hours=1), resolution_due_at=at + timedelta(hours=8),
        first_responded_at=at + timedelta(minutes=responded_after) if responded_after else None,
        resolved_at=at + timedelta(minutes=resolved_after) if resolved_after else None))


def test_helpdesk_report_shows_volumes_service_levels_and_assets(app, tmp_path):
    with app.app_context():
        category = db.session.scalars(select(Category).order_by(Category.id)).first()
        asset = Asset(asset_tag="WS-0042", name="Reading room 3", kind="workstation")
        db.session.add(asset)
        db.session.flush()
        add_ticket(category.id, "2026-03-02 09:00", responded_after=30, resolved_after=240,
                   asset_id=asset.id)
        add_ticket(category.id, "2026-03-03 10:00", responded_after=120, asset_id=asset.id)
        add_ticket(category.id, "2026-03-04 11:00", priority="P4")
        add_ticket(category.id, "2026-02-20 11:00")  # before the period
        db.session.flush()
        fixture_event("asset", asset.asset_tag)
        fixture_event("ticket", *(t.number for t in db.session.execute(select(Ticket)).scalars()))
        db.session.commit()
        label = category.label
        pdf = services.build_from_cli(services.validate_request("helpdesk", "2026-03-01", "2026-03-31"))
        db.session.commit()
    text = pdf_text(pdf, tmp_path)
    assert re.search(rf"{re.escape(label)}\s+3\s+1", text), text
    # P2: first responses after 30 min (met) and 2 h (missed); one resolution in 4 h (met).
    p2 = re.search(r"\n\s*P2\s+2\s+1\s+50\.0%\s+1 h 15 min\s+1 h 51 min\s+100\.0%\s+4 h 00 min", text)
    assert p2, text
    assert re.search(r"WS-0042\s+Reading room 3\s+Workstation\s+2\s+1", text)
    backlog = text[text.index("Backlog by age"):text.index("Assets with the most")]
    assert re.search(r"All(\s+\d+){5}\s+3", backlog), backlog


def test_technician_may_generate_the_helpdesk_report(app, client, login_as, run_jobs):
    login_as("technician")
    response = client.post("/reports", data={"kind": "helpdesk", "date_from": "2026-03-01",
                                             "date_to": "2026-03-31"})
    assert response.status_code == 302
    run_jobs()
    assert b"Download PDF" in client.get(response.headers["Location"]).data
