"""The asset page's history shows status and kind labels, not their codes."""

from __future__ import annotations

import re

from tests.inventory.assets_support import workstation_form


def test_asset_history_shows_labels(client, login_as):
    login_as("technician", "pacs.sam")
    assert client.post("/assets/new", data=workstation_form()).status_code == 302
    edited = client.post("/assets/RWS-01/edit", data=workstation_form(status="out_of_service"))
    assert edited.status_code == 302
    page = client.get("/assets/RWS-01").get_data(as_text=True)
    history = page[page.index(">History<"):]
    assert re.search(r"<strong>Status</strong>:\s*<span[^>]*>In service</span>.*?<span>Out of service</span>",
                     history, re.S), history
    assert "out_of_service" not in history and "in_service" not in history
