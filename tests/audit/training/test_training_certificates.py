"""Training certificates live in the database: any replica serves them, to the user and compliance only."""

from __future__ import annotations

import io
import json
from pathlib import Path

import time_machine
from sqlalchemy import select

from audit.trail.models import AuditEvent
from audit.training.models import TrainingCompletion
from core.extensions import db
from tests.audit.compliance_fixtures import at
from tests.audit.training.test_training import PDF, assignment_of, complete
from tests.conftest import AuthActions


def upload_certificate(app, client, make_user) -> int:
    """Clerk records a completion with a certificate; returns the completion id."""
    with time_machine.travel(at(2036, 1, 1), tick=False):
        make_user("requester", "clerk")
    with time_machine.travel(at(2036, 1, 20, 9), tick=False):
        AuthActions(client).login("clerk")
        response = complete(client, assignment_of(app, "clerk", "hipaa-privacy"), "2036-01-19",
                            certificate=(io.BytesIO(PDF), "cert.pdf"))
    assert response.status_code == 302, response.get_data(as_text=True)
    with app.app_context():
        return db.session.execute(select(TrainingCompletion.id)).scalar_one()


def test_certificate_is_stored_in_the_database_not_the_instance_folder(app, client, make_user):
    completion_id = upload_certificate(app, client, make_user)
    with app.app_context():
        completion = db.session.get(TrainingCompletion, completion_id)
        assert completion.certificate_data == PDF and completion.certificate_size == len(PDF)
    assert not list(Path(app.config["PACSDESK_INSTANCE_PATH"]).rglob("*.pdf"))


def test_another_replica_serves_the_certificate(app, app_config, client, make_user, tmp_path):
    completion_id = upload_certificate(app, client, make_user)
    from app import create_app

    other = create_app({**app_config, "PACSDESK_INSTANCE_PATH": str(tmp_path / "replica")})
    other_client = other.test_client()
    with time_machine.travel(at(2036, 1, 21, 9), tick=False):
        AuthActions(other_client).login("clerk")
        download = other_client.get(f"/training/completions/{completion_id}/certificate")
    assert download.status_code == 200 and download.data == PDF
    assert download.mimetype == "application/pdf" and "cert.pdf" in download.headers["Content-Disposition"]
    download.close()
    with other.app_context():
        db.session.remove()
        db.engine.dispose()


def test_only_the_user_and_compliance_download_and_each_download_is_audited(app, client, make_user):
    completion_id = upload_certificate(app, client, make_user)
    url = f"/training/completions/{completion_id}/certificate"
    with time_machine.travel(at(2036, 1, 21, 9), tick=False):
        make_user("requester", "nosy")
        make_user("technician", "tech")
        make_user("compliance", "privacy")
        auth = AuthActions(client)
        for username, status in (("nosy", 404), ("tech", 404), ("privacy", 200), ("clerk", 200)):
            auth.logout()
            auth.login(username)
            response = client.get(url)
            assert response.status_code == status, username
            response.close()
    with app.app_context():
        downloads = db.session.execute(select(AuditEvent).where(
            AuditEvent.action == "training.certificate_downloaded").order_by(AuditEvent.seq)).scalars().all()
        assert [e.username for e in downloads] == ["privacy", "clerk"]
        assert all(e.object_id == str(completion_id) for e in downloads)
        assert json.loads(downloads[0].details)["certificate"] == "cert.pdf"
