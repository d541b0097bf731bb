"""The app starts, pages render and the login round-trip works."""

from audit.trail.chain import verify_chain


def test_login_lands_on_home_and_is_audited(app, client, login_as):
    user = login_as("technician", "sam")
    page = client.get("/")
    assert page.status_code == 200
    assert b"sam" in page.data
    with app.app_context():
        result = verify_chain()
    assert result.ok and result.count == 2  # user.created + user.login
    assert user.username == "sam"
