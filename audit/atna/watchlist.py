"""The watchlist: patients (VIPs, employees) whose every image access is an exception.

Compliance officers add and remove entries, one at a time or from a CSV file
(``patient_id,category,reason``); every change is an audit event. A CSV with any bad row
changes nothing and names each bad row.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from audit.atna.models import AtnaWatch, WatchCategory
from audit.trail.chain import record
from core.extensions import db
from core.forms import FieldError

MAX_ID = 64
MAX_REASON = 500
MAX_ROWS = 50_000

# Audit actions recorded here (registered by the package's init_app).
AUDIT_ACTIONS = {
    "atna.watch_added": "Patient added to the PACS access watchlist",
    "atna.watch_removed": "Patient removed from the PACS access watchlist",
    "atna.watch_imported": "PACS access watchlist imported from CSV",
}


class WatchError(FieldError):
    """A watchlist change was refused; ``field`` names the form field."""


class WatchImportError(ValueError):
    """A watchlist CSV with bad rows: (line number, reason) for each."""

    def __init__(self, problems: list[tuple[int, str]]) -> None:
        super().__init__("; ".join(f"line {line}: {why}" for line, why in problems[:20]))
        self.problems = problems


@dataclass(frozen=True)
class NewWatch:
    """A patient to watch."""

    patient_id: str
    category: str
    reason: str


def watch_problem(new: NewWatch) -> tuple[str, str] | None:
    """(field, reason) when an entry is not acceptable, else None."""
    if not new.patient_id.strip():
        return "patient_id", "Give the patient ID."
    if len(new.patient_id.strip()) > MAX_ID or any(ord(c) < 32 for c in new.patient_id):
        return "patient_id", f"A patient ID has at most {MAX_ID} printable characters."
    if new.category not in WatchCategory.LABELS:
        return "category", f"The category must be one of: {', '.join(WatchCategory.LABELS)}."
    if not new.reason.strip():
        return "reason", "Say why this patient is watched (for example: hospital employee, public figure)."
    if len(new.reason) > MAX_REASON:
        return "reason", f"The reason has at most {MAX_REASON} characters."
    return None


def add_watch(new: NewWatch, user: Any) -> AtnaWatch:
    """Put a patient on the watchlist (flushes; audited)."""
    problem = watch_problem(new)
    if problem:
        raise WatchError(problem[1], problem[0])
    patient_id = new.patient_id.strip()
    if db.session.execute(select(AtnaWatch.id).where(AtnaWatch.patient_id == patient_id)).first():
        raise WatchError(f"Patient {patient_id} is already on the watchlist.", "patient_id")
    watch = AtnaWatch(patient_id=patient_id, category=new.category, reason=new.reason.strip(),
                      added_by_id=getattr(user, "id", None))
    db.session.add(watch)
    db.session.flush()
    record("atna.watch_added", object_type="atna_watch", object_id=watch.id,
           details={"patient_id": patient_id, "category": new.category, "reason": watch.reason})
    return watch


def remove_watch(watch_id: int, user: Any) -> AtnaWatch:
    """Take a patient off the watchlist (flushes; audited)."""
    watch = db.session.get(AtnaWatch, watch_id)
    if watch is None:
        raise WatchError("That watchlist entry no longer exists.")
    db.session.delete(watch)
    db.session.flush()
    record("atna.watch_removed", object_type="atna_watch", object_id=watch_id,
           details={"patient_id": watch.patient_id, "category": watch.category, "reason": watch.reason})
    return watch


def list_watches() -> list[AtnaWatch]:
    """The whole watchlist by patient ID."""
    return list(db.session.execute(select(AtnaWatch).order_by(AtnaWatch.patient_id)).scalars())


@dataclass(frozen=True)
class WatchImport:
    """What an import did."""

    added: list[str]
    already: list[str]


def import_watch_csv(raw: bytes, user: Any) -> WatchImport:
    """Add every row of a ``patient_id,category,reason`` CSV, or none when any row is bad (flushes)."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise WatchImportError([(1, "the file is not UTF-8 text")]) from None
    reader = csv.reader(io.StringIO(text))
    header = [name.strip().lower() for name in next(reader, [])]
    if header[:1] != ["patient_id"] or not {"category", "reason"} <= set(header):
        raise WatchImportError([(1, "the first line must name the columns patient_id, category, reason")])
    where = {name: header.index(name) for name in ("patient_id", "category", "reason")}
    problems: list[tuple[int, str]] = []
    entries: dict[str, NewWatch] = {}
    for line, cells in enumerate(reader, start=2):
        if not any(cell.strip() for cell in cells):
            continue
        if line > MAX_ROWS + 1:
            problems.append((line, f"a file holds at most {MAX_ROWS} patients"))
            break
        cells += [""] * (len(header) - len(cells))
        category = cells[where["category"]].strip().lower() or WatchCategory.OTHER
        patient_id = cells[where["patient_id"]].strip().lstrip("'")
        new = NewWatch(patient_id, category, cells[where["reason"]].strip())
        problem = watch_problem(new)
        if problem:
            problems.append((line, f"{problem[0]}: {problem[1]}"))
        elif new.patient_id in entries:
            problems.append((line, f"patient_id: {new.patient_id} is listed twice"))
        else:
            entries[new.patient_id] = new
    if problems:
        raise WatchImportError(problems)
    existing = set(db.session.execute(select(AtnaWatch.patient_id)).scalars())
    added = [pid for pid in entries if pid not in existing]
    for pid in added:
        db.session.add(AtnaWatch(patient_id=pid, category=entries[pid].category, reason=entries[pid].reason,
                                 added_by_id=getattr(user, "id", None)))
    db.session.flush()
    record("atna.watch_imported", object_type="atna_watch",
           details={"added": added, "already_watched": sorted(set(entries) & existing)})
    return WatchImport(added, sorted(set(entries) & existing))
