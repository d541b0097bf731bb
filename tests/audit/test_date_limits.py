"""Audit search and legal holds refuse absurd dates and cursors with clear errors, never a 500."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import select

from audit.retention.models import LegalHold
from audit.trail.models import AuditEvent
from audit.trail.search import AuditFilter
from core.extensions import db
from core.timeutil import DateOutOfRange, to_local


def searches(app) -> list[dict]:
    """The recorded audit.search events' details."""
    import json

    with app.app_context():
        return [json.loads(d) for d in db.session.execute(
            select(AuditEvent.details).where(AuditEvent.action == "audit.search")).scalars()]


@pytest.mark.parametrize(("field", "value"), [("date_to", "9999-12-31"), ("date_from", "1000-01-01")])
def test_search_with_a_date_out_of_range_shows_the_field_error(app, client, login_as, field, value):
    login_as("compliance")
    response = client.get(f"/audit?{field}={value}")
    assert response.status_code == 200
    label = "To" if field == "date_to" else "From"
    assert f"{label}: {value} is out of range" in response.get_data(as_text=True)
    assert searches(app) == []


def test_export_with_a_date_out_of_range_is_refused_not_crashed(app, client, login_as):
    login_as("compliance")
    response = client.get("/audit/export.csv?date_to=9999-12-31", follow_redirects=True)
    assert response.status_code == 200
    assert "Fix the search filters before exporting" in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.execute(
            select(AuditEvent.id).where(AuditEvent.action == "audit.export")).first() is None


def test_audit_filter_itself_refuses_a_date_out_of_range():
    with pytest.raises(DateOutOfRange) as refused:
        AuditFilter(date_to=date(9999, 12, 31))
    assert refused.value.field == "date_to"


@pytest.mark.parametrize("cursor", ["before", "after"])
def test_huge_paging_cursor_is_clamped_not_a_500(app, client, login_as, cursor):
    login_as("compliance", "privacy")
    response = client.get(f"/audit?{cursor}=99999999999999999999")
    assert response.status_code == 200
    recorded = searches(app)[-1]
    assert recorded[cursor] == 2**63 - 1
    # older than any position: the newest page; newer than any position: nothing
    assert (recorded["shown"] > 0) == (cursor == "before")


def test_legal_hold_with_an_end_in_year_9999_is_a_form_error(app, client, login_as):
    login_as("compliance", "privacy")
    response = client.post("/retention/holds/new", data={
        "reason": "Case", "kind": "class", "record_class": "audit_events",
        "start": "2020-01-01", "end": "9999-12-31"})
    assert response.status_code == 422
    assert "To: 9999-12-31 is out of range" in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.execute(select(LegalHold.id)).first() is None


def test_legal_hold_ending_in_the_last_accepted_year_is_placed(app, client, login_as):
    login_as("compliance", "privacy")
    response = client.post("/retention/holds/new", data={
        "reason": "Case", "kind": "class", "record_class": "audit_events",
        "start": "2020-01-01", "end": "2999-12-31"})
    assert response.status_code == 302, response.get_data(as_text=True)
    with app.app_context():
        hold = db.session.execute(select(LegalHold)).scalar_one()
        assert to_local(hold.end).date() == date(2999, 12, 31)
