"""Line breaks and tabs typed in a ticket are text: the control-character guard lets them through."""

from __future__ import annotations


def test_line_breaks_and_tabs_in_a_description_are_kept(client, login_as, file_ticket, ticket_row):
    login_as("requester", "rita")
    number = file_ticket(description="line one\r\nline two\tend")
    assert "line two\tend" in ticket_row(number).description
