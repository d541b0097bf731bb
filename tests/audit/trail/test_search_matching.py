"""Audit search matches the way people type: any case, part of a name, a ticket number however written."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select, text

from audit import record
from audit.trail.models import AuditEvent
from audit.trail.search import PER_PAGE, AuditFilter, filtered_select
from core.auth.models import User
from core.extensions import db
from tests.helpers import fixture_event
from tests.inventory.assets_support import workstation_form


@pytest.fixture
def trail(app, make_user):
    """Events by Amara Okafor (dr.okafor) about tickets PD-000038 and PD-000380, and one by pacs.sam."""
    okafor = make_user("requester", "dr.okafor", full_name="Amara Okafor")
    sam = make_user("technician", "pacs.sam", full_name="Sam Rivera")
    with app.app_context():
        for user, number in ((okafor, "PD-000038"), (okafor, "PD-000380"), (sam, "PD-000038")):
            record("ticket.view", object_type="ticket", object_id=number, user=db.session.get(User, user.id))
        fixture_event("ticket")
        db.session.commit()


def shown(client, query: str) -> tuple[int, list[str]]:
    """The result count the page states, and the (user, object) of each row."""
    page = client.get(f"/audit?{query}&action=ticket.view").get_data(as_text=True)
    count = re.search(r'id="result-count"><strong>([\d,]+)</strong>', page)
    assert count, page[:3000]
    rows = re.findall(r"<td>([\w.]+) <span[^>]*>\(\w+\)</span></td>.*?<td>Ticket (PD-\d+)</td>", page, re.S)
    return int(count.group(1).replace(",", "")), [f"{u}:{o}" for u, o in rows]


@pytest.mark.parametrize("typed", ["okafor", "OKAFOR", "Amara", "amara oka", "dr.Okafor"])
def test_user_filter_matches_part_of_a_username_or_full_name_in_any_case(client, login_as, trail, typed):
    login_as("compliance", "privacy")
    total, rows = shown(client, f"username={typed.replace(' ', '+')}")
    assert total == 2
    assert sorted(rows) == ["dr.okafor:PD-000038", "dr.okafor:PD-000380"]


@pytest.mark.parametrize("typed", ["%", "dr_okafor", "dr%okafor"])
def test_wildcards_typed_in_the_user_filter_match_only_themselves(client, login_as, trail, typed):
    login_as("compliance", "privacy")
    assert shown(client, f"username={typed.replace('%', '%25')}") == (0, [])


@pytest.mark.parametrize("typed", ["PD-38", "pd-38", "pd-000038", "PD38"])
def test_a_ticket_number_however_written_finds_that_ticket(client, login_as, trail, typed):
    login_as("compliance", "privacy")
    total, rows = shown(client, f"object_type=Ticket&object_id={typed}")
    assert total == 2
    assert sorted(rows) == ["dr.okafor:PD-000038", "pacs.sam:PD-000038"]


@pytest.mark.parametrize(("flt", "index"), [
    (AuditFilter(object_id="PD-38"), "ix_audit_event_object_lower"),
    (AuditFilter(object_id="ct-02"), "ix_audit_event_object_lower"),
    (AuditFilter(username="okafor"), "ix_audit_event_username_lower"),
])
def test_ids_and_names_are_found_through_indexes_not_by_reading_the_whole_trail(app, trail, flt, index):
    with app.app_context():
        query, order = filtered_select(flt)
        statement = query.order_by(order.desc()).limit(PER_PAGE)
        dialect = db.session.get_bind().dialect
        sql = str(statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
        if dialect.name == "postgresql":
            db.session.execute(text("SET LOCAL enable_seqscan = off"))  # a tiny table is cheaper read whole
            plan = "\n".join(row[0] for row in db.session.execute(text(f"EXPLAIN {sql}")))
            assert "Seq Scan on audit_event" not in plan, plan
        else:
            plan = "\n".join(row[-1] for row in db.session.execute(text(f"EXPLAIN QUERY PLAN {sql}")))
            assert "SCAN audit_event" not in plan.replace("USING INDEX", "USING"), plan
        assert index in plan, plan
        db.session.rollback()


@pytest.mark.parametrize("object_id", ["PD-000038", "pd-000038"])
def test_one_object_exactly_is_found_through_the_lower_cased_id_index(app, trail, object_id):
    with app.app_context():
        statement = select(AuditEvent.seq).where(AuditEvent.about("ticket", object_id))
        found = db.session.execute(statement).scalars().all()
        assert len(found) == (2 if object_id == "PD-000038" else 0)  # exact: the case is the id's own
        dialect = db.session.get_bind().dialect
        sql = str(statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
        if dialect.name == "postgresql":
            db.session.execute(text("SET LOCAL enable_seqscan = off"))
            plan = "\n".join(row[0] for row in db.session.execute(text(f"EXPLAIN {sql}")))
        else:
            plan = "\n".join(row[-1] for row in db.session.execute(text(f"EXPLAIN QUERY PLAN {sql}")))
        assert "ix_audit_event_object_lower" in plan, plan
        db.session.rollback()


def test_a_bare_number_is_a_partial_match(client, login_as, trail):
    login_as("compliance", "privacy")
    total, rows = shown(client, "object_id=38")
    assert total == 3 and len(rows) == 3


def test_no_match_says_zero(client, login_as, trail):
    login_as("compliance", "privacy")
    assert shown(client, "username=nobody")[0] == 0


def test_ticket_asset_and_user_pages_link_to_their_own_access_log(client, login_as, trail, app):
    admin = login_as("admin", "ada")
    with app.app_context():
        okafor = db.session.query(User).filter_by(username="dr.okafor").one()
        okafor_id = okafor.id
    page = client.get(f"/admin/users/{okafor_id}").get_data(as_text=True)
    assert "/audit?username=dr.okafor" in page
    assert f"/audit?object_type=user&amp;object_id={okafor_id}" in page
    assert admin.username == "ada"
    assert client.post("/assets/new", data=workstation_form()).status_code == 302
    asset_page = client.get("/assets/RWS-01").get_data(as_text=True)
    assert "/audit?object_type=asset&amp;object_id=RWS-01" in asset_page
