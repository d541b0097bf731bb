"""Ticket titles in e-mail: kept when harmless, replaced by "a ticket" when they may identify a patient."""

from __future__ import annotations

import pytest

from core.mail.phi import GENERIC_TITLE, safe_title, text_problem


@pytest.mark.parametrize("title", [
    "Priors missing in viewer",
    "Patient not on CT worklist",
    "Wrong patient name on worklist entry",
    "Node 10.1.2.3 down on port 11112",
    "Viewer crash, see PD-000123",
    "Access denied on WS-12",
    "Upgrade to version 3.2.1 failed",
    "Reading room 4 monitors flicker",
])
def test_harmless_titles_are_kept(title):
    assert safe_title(title) == title


@pytest.mark.parametrize("title", [
    "MRN 4471234 not found",
    "mrn: AB12",
    "Acc# A123 won't load",
    "Accession A20260301 split",
    "DOB mismatch",
    "date of birth wrong on worklist",
    "Study 1.2.840.113619.2.55.3.604688 stuck",
    "uid 1.2.3 wrong",
    "DOE^JANE wrong sex",
    "pt Smith priors missing",
    "Patient: Garcia",
    "Mrs Doe's CT missing",
    "Doe, Jane study split",
    "CT from 03/12/1960",
    "exam of 1960-03-12",
    "12 Mar 1960 exam",
    "March 12, 1960 exam",
    "12-MAR-1960 exam",
    "exam 19600312",
    "SSN 123-45-6789",
    "patient id wrong",
])
def test_titles_that_may_identify_a_patient_become_a_ticket(title):
    assert safe_title(title) == GENERIC_TITLE


def test_the_tickets_own_identifiers_are_never_shown():
    assert safe_title("Images for XR77 missing", identifiers=("XR77", "")) == GENERIC_TITLE
    assert safe_title("Images missing", identifiers=("XR77",)) == "Images missing"


def test_titles_are_one_printable_line_of_at_most_80_characters():
    assert safe_title("Viewer\r\nBcc: x@y.example\tslow") == "Viewer Bcc: x@y.example slow"
    long = safe_title("Viewer " * 30)
    assert len(long) == 80 and long.endswith("…")
    assert safe_title("   ") == GENERIC_TITLE


@pytest.mark.parametrize(("text", "problem"), [
    ("Training is due on 2026-04-01.", None),
    ("Node CT1 (10.1.2.3:104) stopped answering.", None),
    ("Ticket PD-000123 has a new reply.", None),
    ("Tickets with accession numbers are listed in the report.", None),
    ("MRN: 123", "an identifier after a keyword such as MRN or accession"),
    ("Accession number A12345", "an identifier after a keyword such as MRN or accession"),
    ("Study 1.2.840.113619.2.55.3", "a DICOM UID"),
    ("Order 4471234 was merged", "a long number"),
])
def test_text_written_for_an_email_is_checked_for_identifiers(text, problem):
    assert text_problem(text) == problem
