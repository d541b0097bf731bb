"""The attestation speaks for who gives it: the trainee in the first person, an officer for the trainee."""

from __future__ import annotations

import time_machine
from sqlalchemy import select

from audit.training.models import TrainingCompletion
from core.extensions import db
from tests.audit.compliance_fixtures import at
from tests.audit.training.test_training import assignment_of, complete


def test_an_officer_records_the_trainees_attestation_and_the_trainee_their_own(app, client, auth, make_user):
    with time_machine.travel(at(2036, 1, 1), tick=False):
        make_user("requester", "clerk")
        make_user("compliance", "privacy")
    clerk_privacy = assignment_of(app, "clerk", "hipaa-privacy")
    clerk_security = assignment_of(app, "clerk", "hipaa-security")
    with time_machine.travel(at(2036, 1, 5), tick=False):
        auth.login("privacy")
        form = client.get(f"/training/assignments/{clerk_privacy}").get_data(as_text=True)
        assert "The trainee attested that they completed this training" in form
        assert "I completed this training" not in form
        assert complete(client, clerk_privacy, "2036-01-04").status_code == 302
        auth.logout()
        auth.login("clerk")
        own = client.get(f"/training/assignments/{clerk_security}").get_data(as_text=True)
        assert "I completed this training" in own and "The trainee attested" not in own
        assert complete(client, clerk_security, "2036-01-04").status_code == 302
    with app.app_context():
        texts = {c.recorded_by.username: c.attestation
                 for c in db.session.execute(select(TrainingCompletion)).scalars()}
    assert texts["privacy"].startswith("The trainee attested that they completed this training")
    assert texts["clerk"].startswith("I completed this training")
