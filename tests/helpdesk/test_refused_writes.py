"""A write the database refuses: its error and the log name the statement, never the values."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import text

from core.extensions import db

PATIENT = "DOE^JANE MRN-4417"


@pytest.fixture
def tickets_refused(app) -> Iterator[None]:
    """A trigger that makes the database refuse every new ticket, dropped after the test."""
    with app.app_context():
        sqlite = db.engine.dialect.name == "sqlite"
        if sqlite:
            db.session.execute(text("CREATE TRIGGER ticket_refuse BEFORE INSERT ON ticket "
                                    "BEGIN SELECT RAISE(ABORT, 'refused'); END"))
        else:
            db.session.execute(text("CREATE OR REPLACE FUNCTION ticket_refuse() RETURNS trigger AS $$ "
                                    "BEGIN RAISE EXCEPTION 'refused'; END $$ LANGUAGE plpgsql"))
            db.session.execute(text("CREATE TRIGGER ticket_refuse BEFORE INSERT ON ticket "
                                    "FOR EACH ROW EXECUTE FUNCTION ticket_refuse()"))
        db.session.commit()
    yield
    with app.app_context():
        db.session.execute(text("DROP TRIGGER ticket_refuse" + ("" if sqlite else " ON ticket")))
        db.session.commit()


def test_a_ticket_the_database_refuses_gets_the_error_page_and_the_log_names_no_patient(
        app, client, login_as, category_id, caplog, tickets_refused):
    login_as("requester")
    data = {"title": f"Priors missing for {PATIENT}", "description": f"{PATIENT}: CT chest priors absent.",
            "category_id": str(category_id()), "impact": "one", "urgency": "hours"}
    response = client.post("/tickets/new", data=data, content_type="multipart/form-data")
    page = response.get_data(as_text=True)
    assert response.status_code == 500 and "Something went wrong" in page and "Log out" in page
    assert "DOE^JANE" not in page
    assert "unhandled error on POST /tickets/new" in caplog.text and "INSERT INTO ticket" in caplog.text
    assert "DOE^JANE" not in caplog.text and "MRN-4417" not in caplog.text
