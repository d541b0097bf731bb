"""The footer and the window title name the organisation once, not the product twice."""

from __future__ import annotations


def test_footer_names_the_organisation(app_config, make_user, client, login_as):
    login_as("requester", "rita")
    page = client.get("/").get_data(as_text=True)
    assert "PACS Desk · PACS Desk" not in page
    assert "<title>" in page and "· PACS Desk</title>" not in page


def test_footer_shows_a_configured_organisation(app_config, tmp_path):
    from app import create_app

    app_config["PACSDESK_ORGANIZATION"] = "Riverside General Hospital"
    app = create_app(app_config)
    page = app.test_client().get("/login").get_data(as_text=True)
    assert "Riverside General Hospital · PACS Desk</span>" in page
    assert "· Riverside General Hospital</title>" in page
