"""Certificate file names are cleaned when stored, and an old unclean name still downloads."""

from __future__ import annotations

import io

from sqlalchemy import select, update

from audit.trail.models import AuditEvent
from audit.training.models import TrainingCompletion
from core.extensions import db
from core.timeutil import to_local, utcnow
from tests.audit.training.test_training import PDF, assignment_of, complete
from tests.helpers import fixture_event


def today(app) -> str:
    """Today in the app's time zone, as the form takes it."""
    with app.app_context():
        return to_local(utcnow()).date().isoformat()


def test_a_certificate_name_with_line_breaks_nul_and_bidi_is_stored_clean(app, client, login_as):
    login_as("requester", "clerk")
    assignment = assignment_of(app, "clerk", "hipaa-privacy")
    response = complete(client, assignment, today(app),
                        certificate=(io.BytesIO(PDF), "cert\tX-Evil: 1\u202e\u2066fdp.pdf"))
    assert response.status_code == 302, response.get_data(as_text=True)[:2000]
    with app.app_context():
        completion = db.session.execute(select(TrainingCompletion)).scalar_one()
        assert completion.certificate_name == "certX-Evil: 1fdp.pdf"
        completion_id = completion.id
    download = client.get(f"/training/completions/{completion_id}/certificate")
    assert download.status_code == 200 and download.data == PDF
    assert "\r" not in download.headers["Content-Disposition"]


def test_an_unclean_name_stored_before_is_cleaned_at_download_and_the_download_audited(app, client,
                                                                                       login_as):
    login_as("requester", "clerk")
    assignment = assignment_of(app, "clerk", "hipaa-privacy")
    assert complete(client, assignment, today(app),
                    certificate=(io.BytesIO(PDF), "cert.pdf")).status_code == 302
    with app.app_context():
        completion_id = db.session.execute(select(TrainingCompletion.id)).scalar_one()
        db.session.execute(update(TrainingCompletion).values(certificate_name="old\r\nname\u202e.pdf"))
        fixture_event("training_completion", completion_id)
        db.session.commit()
    download = client.get(f"/training/completions/{completion_id}/certificate")
    assert download.status_code == 200 and download.data == PDF
    assert 'filename="oldname.pdf"' in download.headers["Content-Disposition"] or \
        "oldname.pdf" in download.headers["Content-Disposition"]
    with app.app_context():
        actions = db.session.execute(select(AuditEvent.action, AuditEvent.outcome)
                                     .where(AuditEvent.action == "training.certificate_downloaded")).all()
        assert actions == [("training.certificate_downloaded", "success")]
