"""Audit trail search: compliance-only, filters in local time, keyset paging, audited searches and exports."""

from __future__ import annotations

import csv
import io

import pytest
from sqlalchemy import select

from audit.trail.models import AuditEvent
from audit.trail.search import AuditFilter, find_events
from core.extensions import db
from tests.audit.compliance_fixtures import at, write_events


def rows(response) -> str:
    return response.get_data(as_text=True)


def last_event(app) -> AuditEvent:
    with app.app_context():
        event = db.session.execute(select(AuditEvent).order_by(AuditEvent.seq.desc())).scalars().first()
        db.session.expunge(event)
        return event


@pytest.mark.parametrize("role", ["requester", "technician"])
def test_search_and_export_are_refused_to_other_roles(client, login_as, role):
    login_as(role)
    assert client.get("/audit").status_code == 403
    assert client.get("/audit/export.csv").status_code == 403
    assert client.post("/audit/verify").status_code == 403


def test_anonymous_visitor_is_sent_to_login(client):
    assert client.get("/audit").status_code == 302


@pytest.mark.parametrize("role", ["compliance", "admin"])
def test_search_is_audited_with_its_filters(app, client, login_as, role):
    login_as(role, "viewer")
    response = client.get("/audit?action=user.login&q=secret")
    assert response.status_code == 200
    event = last_event(app)
    assert event.action == "audit.search" and event.username == "viewer"
    assert '"action":"user.login"' in event.details and '"words":"secret"' in event.details


def test_events_show_newest_first_with_chain_position(app, client, login_as):
    write_events(app, at(2026, 5), 3, details={"note": "alpha"})
    login_as("compliance")
    page = rows(client.get("/audit?q=alpha"))
    page = page[page.index("<tbody>"):page.index("</tbody>")]
    assert page.count("alpha") == 3
    first, second, third = (page.index(f'>{n}</td>') for n in (3, 2, 1))
    assert first < second < third


def test_filters_by_user_action_object_outcome_and_address(app, make_user):
    sam = make_user("technician", "sam")
    write_events(app, at(2026, 5), 1, user=sam, object_type="ticket", object_id="HD-000001",
                 client_address="10.1.1.5")
    write_events(app, at(2026, 5, 2), 1, object_type="asset", object_id="WS-9", client_address="10.9.9.9")
    with app.app_context():
        by_sam = find_events(AuditFilter(username=" SAM ")).events
        assert [e.object_id for e in by_sam] == ["HD-000001"]
        for flt, expected in [
            (AuditFilter(object_type="ticket", object_id="HD-000001"), 1),
            (AuditFilter(client_address="10.9.9.9"), 1),
            (AuditFilter(action="test.compliance", outcome="success"), 2),
            (AuditFilter(action="user.created"), 1),
            (AuditFilter(outcome="failure"), 0),
        ]:
            assert len(find_events(flt).events) == expected, flt


def test_period_is_in_local_days(app_config, make_user):
    app_config["PACSDESK_TIMEZONE"] = "America/New_York"
    from app import create_app

    app = create_app(app_config)
    write_events(app, at(2026, 3, 1, 3), 1, details={"w": "late-evening"})   # 22:00 on Feb 28 in New York
    write_events(app, at(2026, 3, 1, 15), 1, details={"w": "afternoon"})
    from datetime import date

    with app.app_context():
        feb = find_events(AuditFilter(date_from=date(2026, 2, 28), date_to=date(2026, 2, 28))).events
        march = find_events(AuditFilter(date_from=date(2026, 3, 1), date_to=date(2026, 3, 1))).events
        db.session.remove()
        db.engine.dispose()
    assert [e.details for e in feb] == ['{"w":"late-evening"}']
    assert [e.details for e in march] == ['{"w":"afternoon"}']


def test_word_search_matches_whole_words_in_details_case_insensitively(app):
    write_events(app, at(2026, 5), 1, details={"note": "Priors MISSING for CT", "ticket": "HD-001234"})
    write_events(app, at(2026, 5), 1, details={"note": "100% done", "ticket": "HD-0012345"})
    write_events(app, at(2026, 5), 1, details={"note": "1000 done", "mail": "sam@rad.example"})
    with app.app_context():
        def words(text: str) -> list[str]:
            return [e.details for e in find_events(AuditFilter(words=text)).events]

        assert len(words("missing priors")) == 1 and words("miss") == []
        assert len(words("100%")) == 1 and len(words("done")) == 2
        assert words("HD-001234") == words("hd-001234") == words("001234")
        assert len(words("HD-001234")) == 1 and len(words("0012345")) == 1
        assert len(words("rad")) == 1 and len(words("sam@rad.example")) == 1


def test_paging_moves_by_chain_position_without_counting(app, client, login_as):
    write_events(app, at(2026, 5), 7, details={"tag": "pageme"})
    with app.app_context():
        first = find_events(AuditFilter(words="pageme"), per_page=3)
        second = find_events(AuditFilter(words="pageme"), before=first.older_than, per_page=3)
        third = find_events(AuditFilter(words="pageme"), before=second.older_than, per_page=3)
        back = find_events(AuditFilter(words="pageme"), after=second.newer_than, per_page=3)
    assert [e.seq for e in first.events] == [7, 6, 5] and first.newer_than is None
    assert [e.seq for e in second.events] == [4, 3, 2]
    assert [e.seq for e in third.events] == [1] and third.older_than is None
    assert [e.seq for e in back.events] == [7, 6, 5]
    login_as("compliance")
    page = rows(client.get("/audit?q=pageme&before=3"))
    assert ">2</td>" in page and ">1</td>" in page and ">3</td>" not in page


def test_bad_filters_show_an_error_and_search_nothing(app, client, login_as):
    login_as("compliance")
    response = client.get("/audit?date_from=2026-05-02&date_to=2026-05-01")
    assert "ends before it starts" in rows(response)
    assert last_event(app).action == "user.login"


def test_export_streams_the_filtered_set_as_csv_and_is_audited(app, client, login_as):
    write_events(app, at(2026, 5), 2, details={"note": "export-me"})
    write_events(app, at(2026, 5), 1, details={"note": "=HYPERLINK(evil)"}, object_type="=cmd")
    write_events(app, at(2026, 5), 1, details={"note": "other"})
    login_as("compliance", "auditor")
    response = client.get("/audit/export.csv?q=export-me&action=test.compliance")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    table = list(csv.reader(io.StringIO(rows(response))))
    assert table[0][:3] == ["seq", "occurred_at_local", "occurred_at_utc"]
    assert [r[0] for r in table[1:]] == ["2", "1"]
    export = last_event(app)
    assert export.action == "audit.export" and export.username == "auditor"
    assert '"words":"export-me"' in export.details
    hostile = list(csv.reader(io.StringIO(rows(client.get("/audit/export.csv?object_type=%3Dcmd")))))
    assert hostile[1][6] == "'=cmd"


def test_export_of_many_events_arrives_complete(app, client, login_as):
    from audit.trail import search

    write_events(app, at(2026, 5), 12, details={"note": "bulk"})
    login_as("compliance")
    original = search.EXPORT_CHUNK
    search.EXPORT_CHUNK = 5
    try:
        response = client.get("/audit/export.csv?q=bulk&action=test.compliance")
        table = list(csv.reader(io.StringIO(rows(response))))
    finally:
        search.EXPORT_CHUNK = original
    assert [int(r[0]) for r in table[1:]] == list(range(12, 0, -1))


def test_word_search_works_on_a_database_migrated_without_the_index_and_setup_installs_it(app):
    from audit.trail import search_index
    from core.reference_data import load_reference_data

    write_events(app, at(2026, 5), 2, details={"note": "needle in the haystack"})
    with app.app_context(), db.engine.begin() as connection:
        search_index.drop_search_index(connection)
    search_index._present.clear()
    with app.app_context():
        assert not search_index.index_present()
        assert len(find_events(AuditFilter(words="needle")).events) == 2
        load_reference_data()
        db.session.commit()
        assert search_index.index_present()
        assert len(find_events(AuditFilter(words="needle haystack")).events) == 2


def test_common_and_rare_word_plans_find_the_same_events(app, monkeypatch):
    from audit.trail import search_index

    write_events(app, at(2026, 5), 3, details={"note": "priors missing"})
    write_events(app, at(2026, 5), 2, details={"note": "priors present"})
    with app.app_context():
        rare = [e.seq for e in find_events(AuditFilter(words="priors")).events]
        monkeypatch.setattr(search_index, "common_words", lambda: frozenset({"priors"}))
        common = [e.seq for e in find_events(AuditFilter(words="priors")).events]
    assert rare == common == [5, 4, 3, 2, 1]
