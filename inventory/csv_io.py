"""CSV export and import of assets: every row checked before any is written."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import select

from audit import record
from core.auth.models import User
from core.extensions import db
from inventory.asset_rules import INACTIVE_STATUSES, AssetData, local_today, normalise
from inventory.csv_mapping import CODED, COLUMNS, EXPORT_ONLY, Mapping, field_label, save_mapping
from inventory.csv_read import (
    FORMULA_STARTS,
    CsvImportError,
    ParsedFile,
    fallback_warnings,
    parse_date,
    read_file,
    unneutralise,
)
from inventory.models import Asset, AssetKind, AssetStatus
from inventory.services import (
    ADDRESS_FIELDS,
    CHUNK,
    apply_changes,
    data_of,
    diff,
    display_value,
    endpoint_message,
)
from inventory.verification.models import NodeState

# Audit actions recorded here (registered by the package's init_app).
AUDIT_ACTIONS = {"asset.import": "Assets imported from CSV"}

IMPORT_CHUNK = 2_000  # rows written per transaction when the caller commits between parts
TRUE_WORDS = frozenset({"yes", "y", "true", "t", "1", "on", "x"})
FALSE_WORDS = frozenset({"no", "n", "false", "f", "0", "off", ""})


@dataclass
class ImportResult:
    """What an import did."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    verify_ids: list[int] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One sentence for people."""
        return (f"{self.created} asset(s) created, {self.updated} updated, "
                f"{self.unchanged} unchanged")


def neutralise(value: str) -> str:
    """Prefix a quote to cells a spreadsheet would run as a formula."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def _cell(name: str, asset: Asset, users: dict[int, str]) -> str:
    """An asset's value for one export column."""
    if name == "assigned_user":
        return users.get(asset.assigned_user_id, "") if asset.assigned_user_id else ""
    return display_value(name, getattr(asset, name))


def write_csv(assets: Iterable[Asset], out: io.TextIOBase | Any,
              node_states: dict[int, str] | None = None) -> int:
    """Write assets as CSV (UTF-8 with BOM for spreadsheets); returns the number of rows."""
    users = dict(db.session.execute(select(User.id, User.username)).all())
    writer = csv.writer(out)
    out.write("\ufeff")
    header = COLUMNS + (EXPORT_ONLY if node_states is not None else ())
    writer.writerow(header)
    count = 0
    for asset in assets:
        row = [_cell(name, asset, users) for name in COLUMNS]
        if node_states is not None:
            row.append(node_states.get(asset.id, "unknown") if asset.is_dicom_node else "")
        writer.writerow([neutralise(value) for value in row])
        count += 1
    return count


def _convert(name: str, value: str, users: dict[str, int], mapping: Mapping,
             fallbacks: dict[tuple[str, str], str]) -> tuple[str, Any]:
    """One cell to its AssetData field and value; raises ValueError with the reason."""
    value = unneutralise(value.strip())
    if name in CODED:
        code, fell_back = mapping.value_code(name, value)
        if fell_back and code is not None:
            fallbacks[(name, value)] = code
        if code is not None:
            return name, code
        if value:
            words = field_label(name) if field_label(name)[:2].isupper() else field_label(name).lower()
            raise ValueError(f"{name}: unknown {words} '{value}' (use one of "
                             f"{', '.join(f'{label} ({code})' for code, label in CODED[name].items())}"
                             f", or map it to one)")
        return name, None if name in ("dicom_role", "dicom_type") else ""
    if name in ("holds_phi", "tls", "verify_enabled"):
        if value.lower() in TRUE_WORDS:
            return name, True
        if value.lower() in FALSE_WORDS:
            return name, False
        raise ValueError(f"{name}: '{value}' is not yes or no")
    if name in ("purchase_date", "warranty_end"):
        return name, parse_date(name, value, mapping.date_format)
    if name == "port":
        if not value:
            return name, None
        if not value.isdigit():
            raise ValueError(f"port: '{value}' is not a whole number")
        return name, int(value)
    if name == "assigned_user":
        if not value:
            return "assigned_user_id", None
        if value.lower() not in users:
            raise ValueError(f"assigned_user: no user named '{value}'")
        return "assigned_user_id", users[value.lower()]
    if name in ("ae_title", "modality"):
        return name, value or None
    return name, value


@dataclass
class _Row:
    """A validated row waiting to be written."""

    line: int
    data: AssetData
    existing_id: int | None


def validate_csv(raw: bytes, *, update: bool, mapping: Mapping | None = None
                 ) -> tuple[list[_Row], ParsedFile, list[str]]:
    """Parse and check every row against the file and the database; raise on any problem.

    Returns the rows, the file as read and its warnings (encoding, values taken by a fallback).
    """
    parsed = read_file(raw, mapping)
    try:
        rows, warnings = _check_rows(parsed, update)
    except CsvImportError as refused:
        refused.delimiter, refused.warnings = parsed.delimiter, parsed.warnings
        raise
    return rows, parsed, parsed.warnings + warnings


def _check_rows(parsed: ParsedFile, update: bool) -> tuple[list[_Row], list[str]]:
    """Every record checked against the file and the database (CsvImportError on any problem).

    Returns the rows and warnings about values the mapping filled in: a "*" fallback, or (with
    a preset: Snipe-IT and GLPI allow assets without a name) a name made of model and tag.
    """
    columns, records = parsed.targets, parsed.records
    if not records:
        raise CsvImportError([(1, "the file has a header but no rows")])
    fallbacks: dict[tuple[str, str], str] = {}
    unnamed: list[int] = []
    already: list[int] = []
    users = {name.lower(): uid for uid, name in
             db.session.execute(select(User.id, User.username))}
    existing = {tag.lower(): (aid, tag, status) for aid, tag, status in db.session.execute(
        select(Asset.id, Asset.asset_tag, Asset.status))}
    tag_at = columns.index("asset_tag")
    present = _load_assets([existing[cells[tag_at].strip().lower()][0]
                            for _, cells in records if len(cells) == len(columns)
                            and cells[tag_at].strip().lower() in existing])
    endpoints = _active_endpoints()
    today = local_today()
    seen_tags: dict[str, int] = {}
    seen_endpoints: dict[tuple, int] = {}
    rows: list[_Row] = []
    errors: list[tuple[int, str]] = []
    for line, cells in records:
        reasons: list[str] = []
        if len(cells) != len(columns):
            errors.append((line, f"{len(cells)} cells where the header has {len(columns)} "
                                 f"columns"))
            continue
        values: dict[str, Any] = {}
        for name, cell in zip(columns, cells, strict=True):
            if name is None:
                continue
            try:
                key, value = _convert(name, cell, users, parsed.mapping, fallbacks)
                values[key] = value
            except ValueError as exc:
                reasons.append(str(exc))
        tag = values.get("asset_tag", "")
        if parsed.mapping.preset and "name" in values and not values["name"] and tag:
            values["name"] = f"{values['model']} ({tag})" if values.get("model") else tag
            unnamed.append(line)
        found = existing.get(tag.lower())
        existing_id = None
        if found is not None and update:
            existing_id = found[0]
            base = data_of(present[existing_id])
            if found[2] == AssetStatus.DISPOSED:
                reasons.append(f"asset_tag: asset {found[1]} is disposed and cannot be changed")
        else:
            base = AssetData(asset_tag=tag, name="")
        data, row_problems = normalise(replace(base, **values), today)
        reasons.extend(f"{f}: {m}" for f, m in row_problems)
        if found is not None and not update:
            if row_problems or found[0] not in present or diff(present[found[0]], data):
                reasons.append(f"asset_tag: asset {found[1]} already exists (import with "
                               f"--update, or tick 'update existing assets', to change it)")
            else:  # imported before exactly so (a file imported again after a stop part-way)
                existing_id = found[0]
                already.append(line)
        if values.get("status") == AssetStatus.DISPOSED and not (
                found and found[2] == AssetStatus.DISPOSED):
            reasons.append("status: dispose of an asset from its page, where its "
                           "sanitisation is recorded")
        if tag and (first := seen_tags.get(tag.lower())) is not None:
            reasons.append(f"asset_tag: duplicate tag {tag} (also on line {first})")
        elif tag:
            seen_tags[tag.lower()] = line
        if not row_problems and data.kind == AssetKind.DICOM_NODE \
                and data.status not in INACTIVE_STATUSES:
            for endpoint in _endpoint_keys(data):
                owner = endpoints.get(endpoint)
                if owner is not None and owner[0] != existing_id:
                    reasons.append(f"ae_title: {endpoint_message(owner[1], data)}")
                    break
                if (other := seen_endpoints.get(endpoint)) is not None:
                    reasons.append(f"ae_title: the same host, port and AE title is on line "
                                   f"{other}")
                    break
                seen_endpoints[endpoint] = line
        if reasons:
            errors.append((line, "; ".join(reasons)))
        else:
            rows.append(_Row(line, data, existing_id))
    if errors:
        raise CsvImportError(errors)
    warnings = fallback_warnings(parsed, fallbacks)
    if already:
        warnings.append(f"{_counted_lines(already)} are already in PACS Desk exactly as in the file and "
                        f"were left as they are")
    if unnamed:
        warnings.append(f"{_counted_lines(unnamed, 'without a name ')} were named after their model and "
                        f"asset tag")
    return rows, warnings


def _counted_lines(lines: list[int], what: str = "") -> str:
    """'N row(s) [what](line(s) a, b, ...)', naming the first 20 lines."""
    shown = ", ".join(map(str, lines[:20])) + (", ..." if len(lines) > 20 else "")
    return f"{len(lines)} row(s) {what}(line(s) {shown})"


def _load_assets(ids: list[int]) -> dict[int, Asset]:
    """Assets by id, loaded in chunks (databases cap the number of bound parameters)."""
    loaded: dict[int, Asset] = {}
    for i in range(0, len(ids), CHUNK):
        for asset in db.session.scalars(select(Asset).where(Asset.id.in_(ids[i:i + CHUNK]))):
            loaded[asset.id] = asset
    return loaded


def _endpoint_keys(data: AssetData) -> list[tuple]:
    """Keys under which a node's endpoint must be unique."""
    keys = []
    if data.hostname:
        keys.append(("host", data.hostname.lower(), data.port, data.ae_title))
    if data.ip_address:
        keys.append(("ip", data.ip_address, data.port, data.ae_title))
    return keys


def _active_endpoints() -> dict[tuple, tuple[int, str]]:
    """Endpoints of active DICOM nodes in the database: key -> (id, tag)."""
    result: dict[tuple, tuple[int, str]] = {}
    query = select(Asset.id, Asset.asset_tag, Asset.hostname, Asset.ip_address, Asset.port,
                   Asset.ae_title).where(Asset.kind == AssetKind.DICOM_NODE,
                                         Asset.status.not_in(INACTIVE_STATUSES))
    for aid, tag, hostname, ip, port, ae in db.session.execute(query):
        if hostname:
            result[("host", hostname.lower(), port, ae)] = (aid, tag)
        if ip:
            result[("ip", ip, port, ae)] = (aid, tag)
    return result


def import_assets(raw: bytes, *, update: bool, user: User | None, source: str,
                  username: str | None = None, mapping: Mapping | None = None,
                  remember: bool = False, between: Callable[[int, int], None] | None = None
                  ) -> ImportResult:
    """Validate the whole file, then write every row, each part of the file with its audit event.

    Without ``between`` the file is one part, written in the caller's transaction. With it, rows
    are written IMPORT_CHUNK at a time and ``between(written, total)`` runs after each part but
    the last: a job or command commits there, so no other writer waits for the whole file, and a
    run stopped part-way can be repeated (rows already imported exactly so are left as they are).
    ``remember`` saves the mapping for the next file with the same header.
    """
    rows, parsed, warnings = validate_csv(raw, update=update, mapping=mapping)
    result = ImportResult(warnings=warnings)
    step = IMPORT_CHUNK if between is not None else max(1, len(rows))
    parts = -(-len(rows) // step)
    for number, start in enumerate(range(0, len(rows), step), 1):
        if between is not None and start:
            between(start, len(rows))
        part = rows[start:start + step]
        done, tags = _write(part)
        record("asset.import", object_type="asset", user=user, username=username, covers=tags,
               details={"source": source, "rows": len(part), "created": done.created,
                        "updated": done.updated, "unchanged": done.unchanged,
                        "update_existing": update, "assets": tags, "part": number, "parts": parts,
                        "delimiter": parsed.delimiter, "mapping": parsed.mapping.to_json(),
                        "mapping_saved": remember})
        if remember and number == 1:
            save_mapping(parsed.header, parsed.mapping, user)
        db.session.flush()
        result.created += done.created
        result.updated += done.updated
        result.unchanged += done.unchanged
        result.verify_ids += done.verify_ids
    return result


def _write(rows: list[_Row]) -> tuple[ImportResult, list[str]]:
    """Create and update the assets of ``rows``: what was done, and the tags of the assets it changed."""
    done = ImportResult()
    new_rows = [row for row in rows if row.existing_id is None]
    created = [Asset(**vars(row.data)) for row in new_rows]
    db.session.add_all(created)
    db.session.flush()
    done.created = len(created)
    done.verify_ids.extend(asset.id for asset, row in zip(created, new_rows, strict=True)
                           if _verifiable(row.data))
    tags = [asset.asset_tag for asset in created]
    updated = _load_assets([row.existing_id for row in rows if row.existing_id is not None])
    unchecked: list[int] = []  # unchanged nodes, checked after the import if never checked yet
    for row in rows:
        if row.existing_id is None:
            continue
        asset = updated[row.existing_id]
        changes = diff(asset, row.data)
        if not changes:
            done.unchanged += 1
            if _verifiable(row.data):
                unchecked.append(asset.id)
            continue
        apply_changes(asset, changes)
        tags.append(asset.asset_tag)
        done.updated += 1
        if _verifiable(row.data) and ADDRESS_FIELDS & set(changes):
            done.verify_ids.append(asset.id)
    done.verify_ids += _never_checked(unchecked)
    return done, tags


def _never_checked(ids: list[int]) -> list[int]:
    """Those of ``ids`` with no check yet: nodes a stopped import wrote but did not get to check."""
    checked = {asset_id for i in range(0, len(ids), CHUNK) for asset_id in db.session.scalars(
        select(NodeState.asset_id).where(NodeState.asset_id.in_(ids[i:i + CHUNK]),
                                         NodeState.last_check_at.is_not(None)))}
    return [asset_id for asset_id in ids if asset_id not in checked]


def _verifiable(data: AssetData) -> bool:
    """Whether an imported node should be checked after the import commits."""
    return (data.kind == AssetKind.DICOM_NODE and data.verify_enabled
            and data.status not in INACTIVE_STATUSES)
