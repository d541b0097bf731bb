"""The app starts, pages render and the login round-trip works."""

from sqlalchemy import select

from audit.trail.chain import verify_chain
from audit.trail.models import AuditEvent
from core.extensions import db


def test_login_lands_on_home_and_is_audited(app, client, login_as):
    user = login_as("technician", "sam")
    page = client.get("/")
    assert page.status_code == 200
    assert b"sam" in page.data
    with app.app_context():
        result = verify_chain()
        actions = db.session.execute(select(AuditEvent.action).order_by(AuditEvent.seq)).scalars().all()
    assert result.ok and result.count == len(actions)
    assert actions[0] == "user.created" and actions[-1] == "user.login"
    assert set(actions[1:-1]) <= {"training.assigned"}  # the courses a technician must take
    assert user.username == "sam"
