"""Reading an uploaded CSV file: its encoding, delimiter, header against a mapping, dates and values."""

from __future__ import annotations

import codecs
import csv
import io
import re
from dataclasses import dataclass
from datetime import date

from inventory.csv_mapping import (
    CODED,
    COLUMNS,
    DELIMITERS,
    IGNORE,
    REQUIRED,
    Mapping,
    fold,
    known_code,
)

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
ISO_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
WRITTEN_DATE = re.compile(r"^(\d{1,2})[./-](\d{1,2})[./-](\d{4})$")
WRITTEN_FORMS = {"dmy": "DD/MM/YYYY", "mdy": "MM/DD/YYYY"}
TRAILING_TIME = re.compile(r"[ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?( ?[AP]M)?$", re.IGNORECASE)


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


def unneutralise(value: str) -> str:
    """Undo ``neutralise`` so an exported file imports back unchanged."""
    return value[1:] if value.startswith("'") and value[1:].startswith(FORMULA_STARTS) else value


def decode(raw: bytes) -> tuple[str, list[str]]:
    """The text of an upload and warnings: UTF-8 (a byte-order mark is fine), else Windows-1252.

    Raises ValueError with (line, reason) in its args when neither reads the file.
    """
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise ValueError(1, "the file is UTF-16 text: save it as 'CSV UTF-8' and try again")
    try:
        return raw.decode("utf-8-sig"), []
    except UnicodeDecodeError as exc:
        first = exc
    try:
        text = raw.decode("cp1252")
    except UnicodeDecodeError:
        line = raw.count(b"\n", 0, first.start) + 1
        raise ValueError(line, f"the file is not UTF-8 text (byte 0x{raw[first.start]:02X} cannot "
                               f"be read) nor Windows-1252: save it as 'CSV UTF-8' and try "
                               f"again") from None
    line = raw.count(b"\n", 0, first.start) + 1
    return text, [f"The file is not UTF-8 (byte 0x{raw[first.start]:02X} on line {line}): it was "
                  f"read as Windows-1252 (Western European). Check accented letters such as "
                  f"'{text[first.start]}' before importing."]


def detect_delimiter(text: str) -> str:
    """The delimiter of the header line: the most frequent of , ; and tab outside quotes."""
    counts = dict.fromkeys(DELIMITERS, 0)
    quoted = False
    for char in text:
        if char == '"':
            quoted = not quoted
        elif char in "\r\n" and not quoted:
            break
        elif char in counts and not quoted:
            counts[char] += 1
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] > counts[","] else ","


def parse_date(name: str, value: str, date_format: str) -> date | None:
    """A date cell in ISO or the chosen written format; raises ValueError naming the field."""
    text = TRAILING_TIME.sub("", value.strip())
    if not text:
        return None
    try:
        if match := ISO_DATE.match(text):
            return date(*(int(g) for g in match.groups()))
        match = WRITTEN_DATE.match(text)
        if match and date_format in ("dmy", "mdy"):
            first, second, year = (int(g) for g in match.groups())
            day, month = (first, second) if date_format == "dmy" else (second, first)
            return date(year, month, day)
    except ValueError:
        pass
    hint = "YYYY-MM-DD" + (f" or {WRITTEN_FORMS[date_format]}" if date_format in WRITTEN_FORMS else "")
    raise ValueError(f"{name}: bad date '{value}' (use {hint})")


def delimiter_name(delimiter: str) -> str:
    """How errors name a delimiter: "semicolon (;)"."""
    return DELIMITERS.get(delimiter, repr(delimiter))


@dataclass
class ParsedFile:
    """An upload read with its mapping: the header, the field of each column, the records.

    ``problems`` holds what the header check found when the file was read without it.
    """

    header: list[str]
    targets: list[str | None]
    records: list[tuple[int, list[str]]]
    delimiter: str
    warnings: list[str]
    mapping: Mapping
    problems: list[tuple[int, str]]


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
    return ParsedFile(names, targets, records, delimiter, warnings, mapping, problems)


def fallback_warnings(parsed: ParsedFile, fallbacks: dict[tuple[str, str], str]) -> list[str]:
    """One warning per value imported through a "*" fallback, naming the value and its column."""
    columns = {t: h for h, t in zip(parsed.header, parsed.targets, strict=True) if t}
    return [f"{columns.get(name, name)} '{value}' has no match: imported as "
            f"{CODED[name].get(code, code)}" for (name, value), code in sorted(fallbacks.items())]


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
            written = unneutralise(cells[index].strip()) if index < len(cells) else ""
            if not written or fold(written) in seen or len(seen) >= limit:
                continue
            seen.add(fold(written))
            if known_code(name, written) is not None and fold(written) not in listed:
                continue
            code, fallback = parsed.mapping.value_code(name, written)
            questions.append(ValueQuestion(name, column.strip(), written, code, fallback))
    return questions
