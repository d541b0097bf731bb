"""The ticket list's CSV export, read by people in a spreadsheet: headers in words, values as labels."""

from __future__ import annotations

import csv
import io
import re

from helpdesk.views import EXPORT_HEADERS


def rows(response) -> list[dict[str, str]]:
    """The CSV rows by header (the export starts with a UTF-8 byte order mark for spreadsheets)."""
    return list(csv.DictReader(io.StringIO(response.data.decode("utf-8-sig"))))


def test_export_headers_are_words_and_values_are_the_labels_people_see(client, login_as, make_user,
                                                                       file_ticket, category_id):
    sam = make_user("technician", "pacs.sam", full_name="Sam Okafor")
    login_as("requester", "dr.lindqvist", full_name="Anna Lindqvist")
    number = file_ticket(title="Priors missing in room 2")
    login_as("technician", "pacs.lee")
    client.post(f"/tickets/{number}/update", data={
        "status": "waiting", "priority": "P2", "category_id": str(category_id("hardware")),
        "assignee_id": str(sam.id)})
    export = client.get("/tickets/export.csv?status=all")
    assert export.data.startswith("\ufeff".encode()) and export.mimetype == "text/csv"
    header = next(csv.reader(io.StringIO(export.data.decode("utf-8-sig"))))
    assert header == list(EXPORT_HEADERS) == ["Number", "Title", "Status", "Priority", "Category",
                                              "Requester", "Assigned to", "Created", "SLA due",
                                              "Resolved", "Closed"]
    [row] = rows(export)
    assert row["Number"] == number and row["Title"] == "Priors missing in room 2"
    assert row["Status"] == "Waiting on requester" and row["Priority"] == "P2 · high"
    assert row["Requester"] == "Anna Lindqvist" and row["Assigned to"] == "Sam Okafor"
    assert row["Category"] not in ("", "hardware") and row["Resolved"] == ""
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2} \S+", row["Created"]), row["Created"]


def test_requesters_own_export_has_the_same_words(client, login_as, file_ticket):
    login_as("requester", "dr.lindqvist", full_name="Anna Lindqvist")
    number = file_ticket(title="Viewer slow")
    [row] = rows(client.get("/my/tickets/export.csv?status=all"))
    assert (row["Number"], row["Status"], row["Priority"], row["Requester"], row["Assigned to"]) == \
        (number, "New", "P3 · normal", "Anna Lindqvist", "")


def test_a_formula_in_a_name_is_neutralised_like_one_in_a_title(client, login_as, file_ticket):
    login_as("requester", "dr.formula", full_name="=cmd|' /C calc'!A0")
    file_ticket(title="+SUM(A1)")
    [row] = rows(client.get("/my/tickets/export.csv?status=all"))
    assert row["Title"] == "'+SUM(A1)" and row["Requester"] == "'=cmd|' /C calc'!A0"
