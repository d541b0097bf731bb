"""Patient identifiers in audit event details: which values are identifiers, and their masked form.

The access-audit report prints patient identifiers only when the officer asks for them; otherwise
every identifier an event noted (an accession number, a patient ID, a study UID, a patient's
name), wherever it sits in the details, is replaced by ``OMITTED`` and counted.
"""

from __future__ import annotations

import json
import re
from typing import Any

from audit.reports.registry import phi_rules

OMITTED = "(omitted)"
# Keys that hold patient identifiers in the audit package's own events (PACS audit messages,
# watchlist); domains add theirs through their PHI rules.
BASE_KEYS = frozenset({"patient_id", "patient_name", "patient", "accession_number", "accession",
                       "study_instance_uid", "study_uid"})
# "TYPE:ID" objects (report filters, holds) whose id is a patient identifier.
IDENTIFIER_OBJECTS = frozenset({"patient", "accession", "study"})
# A legal hold's scope in words: "imaging studies of patient ID MRN-1".
HOLD_SCOPE = re.compile(r"^(imaging studies of (?:patient ID|accession number|Study Instance UID)) .+$")


def identifier_keys() -> frozenset[str]:
    """Detail keys whose values are patient identifiers (the audit package's and the domains')."""
    return BASE_KEYS | {key for rule in phi_rules().values() for key in rule.identifiers}


def mask_object(text: str | None) -> str | None:
    """A ``TYPE:ID`` text with the id masked when it is a patient identifier."""
    if not text:
        return text
    kind, sep, _ident = text.partition(":")
    return f"{kind}:{OMITTED}" if sep and kind.strip().lower() in IDENTIFIER_OBJECTS else text


def _mask(value: Any, keys: frozenset[str], key: str | None, found: list[int]) -> Any:
    """``value`` with every identifier in it replaced by OMITTED (counted in ``found``)."""
    if isinstance(value, dict):
        return {k: _mask(v, keys, str(k), found) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v, keys, key, found) for v in value]
    if value in (None, "", [], {}):
        return value
    if key in keys:
        found[0] += 1
        return OMITTED
    if isinstance(value, str):
        masked = mask_object(value) if key == "object" else HOLD_SCOPE.sub(rf"\1 {OMITTED}", value)
        if masked != value:
            found[0] += 1
        return masked
    return value


def mask_details(details: str | None, keys: frozenset[str]) -> tuple[str | None, int]:
    """Event details (JSON text) with patient identifiers masked, and how many were masked."""
    if not details:
        return details, 0
    try:
        data = json.loads(details)
    except ValueError:
        return details, 0
    found = [0]
    masked = _mask(data, keys, None, found)
    return (json.dumps(masked) if found[0] else details), found[0]
