"""CSV export and all-or-nothing import of assets."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import select

from audit import record
from core.auth.models import User
from core.extensions import db
from inventory.asset_rules import INACTIVE_STATUSES, AssetData, local_today, normalise
from inventory.csv_mapping import (
    CODED,
    COLUMNS,
    DELIMITERS,
    EXPORT_ONLY,
    IGNORE,
    REQUIRED,
    Mapping,
    decode,
    detect_delimiter,
    field_label,
    fold,
    known_code,
    parse_date,
    save_mapping,
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

# Audit actions recorded here (registered by the package's init_app).
AUDIT_ACTIONS = {"asset.import": "Assets imported from CSV"}

TRUE_WORDS = frozenset({"yes", "y", "true", "t", "1", "on", "x"})
FALSE_WORDS = frozenset({"no", "n", "false", "f", "0", "off", ""})
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class CsvImportError(Exception):
    """The file was refused; ``problems`` lists (line number, reason), nothing was imported."""

    def __init__(self, problems: list[tuple[int, str]], delimiter: str | None = None) -> None:
        super().__init__(f"{len(problems)} problem(s) in the CSV file; nothing was imported")
        self.problems = problems
        self.delimiter = delimiter
        self.warnings: list[str] = []

    @property
    def read_as(self) -> str:
        """How the file was read, for every error message: "read as semicolon (;)-separated"."""
        return f"read as {delimiter_name(self.delimiter)}-separated" if self.delimiter else ""


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


def _unneutralise(value: str) -> str:
    """Undo ``neutralise`` so an exported file imports back unchanged."""
    return value[1:] if value.startswith("'") and value[1:].startswith(FORMULA_STARTS) else value


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


def delimiter_name(delimiter: str) -> str:
    """How errors name a delimiter: "semicolon (;)"."""
    return DELIMITERS.get(delimiter, repr(delimiter))


@dataclass
class ParsedFile:
    """An upload read with its mapping: the header, the field of each column, the records."""

    header: list[str]
    targets: list[str | None]
    records: list[tuple[int, list[str]]]
    delimiter: str
    warnings: list[str]
    mapping: Mapping


def _header(names: list[str], mapping: Mapping) -> tuple[list[str | None], list[tuple[int, str]]]:
    """The field each column fills (None: ignored) and the problems with the header."""
    targets = [mapping.column_target(n) for n in names]
    problems = []
    unknown = [n.strip() for n, t in zip(names, targets, strict=True) if t is None]
    if unknown:
        problems.append((1, f"unknown column(s): {', '.join(unknown) or '(empty)'}; known "
                            f"columns are {', '.join(COLUMNS)} (or map each column to a field "
                            f"or to 'ignore')"))
    fields = [t for t in targets if t not in (None, IGNORE)]
    missing = [c for c in REQUIRED if c not in fields]
    if missing:
        problems.append((1, f"missing required column(s): {', '.join(missing)}"))
    repeated = sorted({c for c in fields if fields.count(c) > 1})
    if repeated:
        problems.append((1, f"column(s) given twice: {', '.join(repeated)}"))
    return [None if t == IGNORE else t for t in targets], problems


def read_file(raw: bytes, mapping: Mapping | None = None, *, check_header: bool = True) -> ParsedFile:
    """Decode, find the delimiter and read the records; raise CsvImportError on an unreadable file."""
    mapping = mapping or Mapping()
    try:
        text, warnings = decode(raw)
    except ValueError as exc:
        raise CsvImportError([(int(exc.args[0]), str(exc.args[1]))]) from None
    delimiter = mapping.delimiter or detect_delimiter(text)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        names = next(reader)
    except StopIteration:
        raise CsvImportError([(1, "the file is empty: the first line must name the "
                                  "columns")], delimiter) from None
    except csv.Error as exc:
        raise CsvImportError([(1, f"unreadable header: {exc}")], delimiter) from None
    targets, problems = _header(names, mapping)
    records: list[tuple[int, list[str]]] = []
    start = reader.line_num + 1
    try:
        for cells in reader:
            if any(c.strip() for c in cells):
                records.append((start, cells))
            start = reader.line_num + 1
    except csv.Error as exc:
        problems.append((start, f"unreadable CSV: {exc}"))
    if problems and check_header:
        raise CsvImportError(problems, delimiter)
    return ParsedFile(names, targets, records, delimiter, warnings, mapping)


def _convert(name: str, value: str, users: dict[str, int], mapping: Mapping,
             fallbacks: dict[tuple[str, str], str]) -> tuple[str, Any]:
    """One cell to its AssetData field and value; raises ValueError with the reason."""
    value = _unneutralise(value.strip())
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


def fallback_warnings(parsed: ParsedFile, fallbacks: dict[tuple[str, str], str]) -> list[str]:
    """One warning per value imported through a "*" fallback, naming the value and its column."""
    columns = {t: h for h, t in zip(parsed.header, parsed.targets, strict=True) if t}
    return [f"{columns.get(name, name)} '{value}' has no match: imported as "
            f"{CODED[name].get(code, code)}" for (name, value), code in sorted(fallbacks.items())]


def validate_csv(raw: bytes, *, update: bool, mapping: Mapping | None = None
                 ) -> tuple[list[_Row], ParsedFile, list[str]]:
    """Parse and check every row against the file and the database; raise on any problem.

    Returns the rows, the file as read and its warnings (encoding, values taken by a fallback).
    """
    parsed = read_file(raw, mapping)
    try:
        rows, fallbacks = _check_rows(parsed, update)
    except CsvImportError as refused:
        refused.delimiter, refused.warnings = parsed.delimiter, parsed.warnings
        raise
    return rows, parsed, parsed.warnings + fallback_warnings(parsed, fallbacks)


def _check_rows(parsed: ParsedFile, update: bool
                ) -> tuple[list[_Row], dict[tuple[str, str], str]]:
    """Every record checked against the file and the database (CsvImportError on any problem)."""
    columns, records = parsed.targets, parsed.records
    if not records:
        raise CsvImportError([(1, "the file has a header but no rows")])
    fallbacks: dict[tuple[str, str], str] = {}
    users = {name.lower(): uid for uid, name in
             db.session.execute(select(User.id, User.username))}
    existing = {tag.lower(): (aid, tag, status) for aid, tag, status in db.session.execute(
        select(Asset.id, Asset.asset_tag, Asset.status))}
    tag_at = columns.index("asset_tag")
    to_update = _load_assets([existing[cells[tag_at].strip().lower()][0]
                              for _, cells in records if len(cells) == len(columns)
                              and cells[tag_at].strip().lower() in existing]) if update else {}
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
        found = existing.get(tag.lower())
        existing_id = None
        if found is not None and update:
            existing_id = found[0]
            base = data_of(to_update[existing_id])
            if found[2] == AssetStatus.DISPOSED:
                reasons.append(f"asset_tag: asset {found[1]} is disposed and cannot be changed")
        else:
            base = AssetData(asset_tag=tag, name="")
            if found is not None:
                reasons.append(f"asset_tag: asset {found[1]} already exists (import with "
                               f"--update, or tick 'update existing assets', to change it)")
        data, row_problems = normalise(replace(base, **values), today)
        reasons.extend(f"{f}: {m}" for f, m in row_problems)
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
    return rows, fallbacks


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
                  remember: bool = False) -> ImportResult:
    """Validate the whole file, then write every row in the caller's transaction.

    ``remember`` saves the mapping for the next file with the same header.
    """
    rows, parsed, warnings = validate_csv(raw, update=update, mapping=mapping)
    result = ImportResult(warnings=warnings)
    new_rows = [row for row in rows if row.existing_id is None]
    created = [Asset(**vars(row.data)) for row in new_rows]
    db.session.add_all(created)
    db.session.flush()
    result.created = len(created)
    result.verify_ids.extend(asset.id for asset, row in zip(created, new_rows, strict=True)
                             if _verifiable(row.data))
    changed_tags = [asset.asset_tag for asset in created]
    updated = _load_assets([row.existing_id for row in rows if row.existing_id is not None])
    for row in rows:
        if row.existing_id is None:
            continue
        asset = updated[row.existing_id]
        changes = diff(asset, row.data)
        if not changes:
            result.unchanged += 1
            continue
        apply_changes(asset, changes)
        changed_tags.append(asset.asset_tag)
        result.updated += 1
        if _verifiable(row.data) and ADDRESS_FIELDS & set(changes):
            result.verify_ids.append(asset.id)
    record("asset.import", object_type="asset", user=user, username=username, covers=changed_tags,
           details={"source": source, "rows": len(rows), "created": result.created,
                    "updated": result.updated, "unchanged": result.unchanged,
                    "update_existing": update, "assets": changed_tags,
                    "delimiter": parsed.delimiter, "mapping": parsed.mapping.to_json(),
                    "mapping_saved": remember})
    if remember:
        save_mapping(parsed.header, parsed.mapping, user)
    db.session.flush()
    return result


def _verifiable(data: AssetData) -> bool:
    """Whether an imported node should be checked after the import commits."""
    return (data.kind == AssetKind.DICOM_NODE and data.verify_enabled
            and data.status not in INACTIVE_STATUSES)



@dataclass(frozen=True)
class ValueQuestion:
    """A value of a coded column that is not a code or label: what it means, if the mapping says."""

    field: str
    column: str
    written: str
    code: str | None
    fallback: bool


def value_questions(parsed: ParsedFile, limit: int = 100) -> list[ValueQuestion]:
    """The values the mapping page asks about: each distinct value of a coded column that is not
    a code or label already (up to ``limit`` per column), with what the mapping makes of it."""
    questions: list[ValueQuestion] = []
    for index, (column, name) in enumerate(zip(parsed.header, parsed.targets, strict=True)):
        if name not in CODED:
            continue
        listed = {fold(v) for v in parsed.mapping.values.get(name, {})}
        seen: set[str] = set()
        for _, cells in parsed.records:
            written = _unneutralise(cells[index].strip()) if index < len(cells) else ""
            if not written or fold(written) in seen or len(seen) >= limit:
                continue
            seen.add(fold(written))
            if known_code(name, written) is not None and fold(written) not in listed:
                continue
            code, fallback = parsed.mapping.value_code(name, written)
            questions.append(ValueQuestion(name, column.strip(), written, code, fallback))
    return questions
