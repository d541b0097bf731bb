"""A write the database refuses: its error and the log name the statement and the rule, never the values."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from core.extensions import db
from tests.helpers import inserts_refused, require_postgres

PATIENT = "DOE^JANE MRN-4417"


def test_a_ticket_the_database_refuses_gets_the_error_page_and_the_log_names_no_patient(
        app, client, login_as, category_id, caplog):
    login_as("requester")
    data = {"title": f"Priors missing for {PATIENT}", "description": f"{PATIENT}: CT chest priors absent.",
            "category_id": str(category_id()), "impact": "one", "urgency": "hours"}
    with inserts_refused(app, "ticket", "TRUE"):
        response = client.post("/tickets/new", data=data, content_type="multipart/form-data")
    page = response.get_data(as_text=True)
    assert response.status_code == 500 and "Something went wrong" in page and "Log out" in page
    assert "DOE^JANE" not in page
    assert "unhandled error on POST /tickets/new" in caplog.text and "INSERT INTO ticket" in caplog.text
    assert "DOE^JANE" not in caplog.text and "MRN-4417" not in caplog.text


@pytest.mark.postgres
def test_on_postgresql_a_unique_violation_names_the_constraint_but_not_the_value(app):
    require_postgres()
    with app.app_context():
        db.session.execute(text("CREATE TEMPORARY TABLE watched (patient_id text UNIQUE)"))
        add = text("INSERT INTO watched VALUES (:patient_id)")
        db.session.execute(add, {"patient_id": "MRN-4417"})
        with pytest.raises(IntegrityError) as refused:
            db.session.execute(add, {"patient_id": "MRN-4417"})
        db.session.rollback()
    assert 'violates unique constraint "watched_patient_id_key"' in str(refused.value)
    assert "MRN-4417" not in str(refused.value)
    assert "MRN-4417" in refused.value.orig.diag.message_detail  # still there for code that asks
