"""Keep patient identifiers out of e-mail: ticket titles are checked, message text is refused.

A ticket title goes into an e-mail only when none of these rules finds something that may
identify a patient; otherwise the title is replaced by ``a ticket``:

1. a run of 6 or more digits (MRNs, accession numbers, DICOM dates such as 19600312), or an
   ``123-45-6789`` social security number; ticket numbers such as ``PD-000123`` do not count;
2. a DICOM UID: numbers joined by dots with 5 or more parts, or 4 parts one of which has more
   than 3 digits (an IPv4 address such as ``10.1.2.3`` does not count);
3. a keyword: ``MRN``, ``MR#``, ``medical record``, ``acc``/``acc#``/``accession``, ``DOB``,
   ``date of birth``, ``born``, ``patient id``/``PID``, ``SSN``, ``UID``, ``name:``;
4. a date: ``12/03/1960``, ``1960-03-12``, ``12.03.60``, ``12 Mar 1960``, ``March 12, 1960``,
   ``12-MAR-1960``;
5. a person's name: a DICOM name (``DOE^JANE``), a title before a capitalised word (``Mrs Doe``),
   ``patient``/``pt`` followed by a capitalised word (``pt Smith``), or ``Last, First``
   (``Doe, Jane``);
6. any of the ticket's own identifiers (accession number, patient ID, study UID) verbatim.

Message text written by PACS Desk itself (dates, IP addresses, ports) is checked by the
narrower ``text_problem``: identifiers keyed by a keyword, UIDs and long digit runs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

GENERIC_TITLE = "a ticket"
MAX_TITLE = 80

TICKET_NUMBER = re.compile(r"\bPD-\d{6,9}\b", re.IGNORECASE)
LONG_DIGITS = re.compile(r"\d{6,}")
SSN = re.compile(r"\b\d{3}-\d{2}-\d{4}\b")
DOTTED = re.compile(r"(?<![\d.])\d+(?:\.\d+){3,}(?![\d.])")
KEYWORDS = re.compile(
    r"\b(?:mrn|mr\s*#|medical\s+record|acc(?:ession)?(?:\s*(?:no|nr|#))?\b|dob\b|d\.o\.b|date\s+of\s+birth"
    r"|born\b|patient\s*id|pid\b|pt\s*id|ssn\b|uid\b|name\s*:)",
    re.IGNORECASE,
)
MONTHS = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
DATES = re.compile(
    r"\b\d{1,4}[-/.]\d{1,2}[-/.]\d{2,4}\b"
    rf"|\b\d{{1,2}}[\s-]+{MONTHS}[\s-]+\d{{2,4}}\b"
    rf"|\b{MONTHS}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{2,4}}\b",
    re.IGNORECASE,
)
NAMES = re.compile(
    r"\b[A-Za-z'-]+\^[A-Za-z'-]+"
    r"|\b(?i:mr|mrs|ms|miss|mx)\.?\s+[A-Z][a-z]"
    r"|\b(?i:patient|pt|pat)\.?(?:\s+(?i:name))?\s*[:#]?\s+[A-Z][a-z]+"
    r"|\b[A-Z][a-z]+,\s+[A-Z][a-z]+\b"
)


def _dotted_is_uid(match: str) -> bool:
    """Whether a dotted number is a UID rather than an IPv4 address or a version."""
    parts = match.split(".")
    return len(parts) >= 5 or any(len(part) > 3 for part in parts)


def title_problem(title: str, identifiers: Iterable[str] = ()) -> str | None:
    """Which rule makes ``title`` unsafe for e-mail, or None when it is safe."""
    text = TICKET_NUMBER.sub(" ", title)
    for value in identifiers:
        if value and value.strip() and value.strip().lower() in title.lower():
            return "one of the ticket's identifiers"
    if any(_dotted_is_uid(m.group()) for m in DOTTED.finditer(text)):
        return "a DICOM UID"
    if LONG_DIGITS.search(text) or SSN.search(text):
        return "a long number"
    if KEYWORDS.search(text):
        return "an identifier keyword"
    if DATES.search(text):
        return "a date"
    if NAMES.search(text):
        return "a person's name"
    return None


def safe_title(title: str, identifiers: Iterable[str] = ()) -> str:
    """The title fit for an e-mail: one line, at most 80 characters, or "a ticket"."""
    line = " ".join("".join(c if c.isprintable() else " " for c in title).split())
    if not line or title_problem(line, identifiers):
        return GENERIC_TITLE
    if len(line) > MAX_TITLE:
        line = line[: MAX_TITLE - 1].rstrip() + "…"
    return line


TEXT_KEYED = re.compile(
    r"\b(?:mrn|mr\s*#|medical\s+record|acc(?:ession)?(?:\s*(?:no|number|#))?|dob|date\s+of\s+birth"
    r"|patient\s*(?:id|name)|pid|ssn|study\s*(?:instance\s*)?uid|series\s*uid)\b\s*[:#=]?\s*[A-Za-z-]*\d",
    re.IGNORECASE,
)


def text_problem(text: str) -> str | None:
    """Why text written for an e-mail looks like it carries a patient identifier, or None."""
    cleaned = TICKET_NUMBER.sub(" ", text)
    if TEXT_KEYED.search(cleaned):
        return "an identifier after a keyword such as MRN or accession"
    if any(_dotted_is_uid(m.group()) for m in DOTTED.finditer(cleaned)):
        return "a DICOM UID"
    if LONG_DIGITS.search(cleaned) or SSN.search(cleaned):
        return "a long number"
    return None
