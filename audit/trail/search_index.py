"""A word index over audit event details: FTS5 on SQLite, a GIN tsvector index on PostgreSQL.

Word search must answer in well under a second over millions of events, so it looks words
up in an index rather than scanning every row. Words are runs of letters and digits,
matched case-insensitively as whole words ("HD-000123" is the words "hd" and "000123").
The index is installed beside the table by ``create_all`` and by the migration
(``install_search_index``); on SQLite triggers keep it in step with inserts and purges.
"""

from __future__ import annotations

import re
import time
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

from audit.atna.models import is_partition
from core.extensions import db

FTS_TABLE = "audit_event_fts"
TOKEN = re.compile(r"[^\W_]+")

_SQLITE = [
    """CREATE VIRTUAL TABLE IF NOT EXISTS audit_event_fts USING fts5(
        details, content='audit_event', content_rowid='id', tokenize='unicode61 remove_diacritics 0')""",
    """CREATE TRIGGER IF NOT EXISTS audit_event_fts_insert AFTER INSERT ON audit_event BEGIN
        INSERT INTO audit_event_fts(rowid, details) VALUES (new.id, new.details); END""",
    """CREATE TRIGGER IF NOT EXISTS audit_event_fts_delete AFTER DELETE ON audit_event BEGIN
        INSERT INTO audit_event_fts(audit_event_fts, rowid, details)
        VALUES ('delete', old.id, old.details); END""",
]

# PostgreSQL's text parser reads "-001234" as a signed number and "a@b.c" as one e-mail
# token; splitting on everything but letters and digits first makes it tokenise as FTS5 does.
_PG_WORDS = "to_tsvector('simple'::regconfig, regexp_replace({}, '[^[:alnum:]]+', ' ', 'g'))"
PG_INDEX = "ix_audit_event_details_tokens"

_POSTGRES = [
    f"CREATE INDEX IF NOT EXISTS {PG_INDEX} ON audit_event USING gin ({_PG_WORDS.format('details')})",
]


def install_search_index(connection: Connection) -> None:
    """Create the word index (and on SQLite its triggers), filling it from existing rows."""
    if connection.dialect.name == "postgresql":
        for statement in _POSTGRES:
            connection.exec_driver_sql(statement)
        return
    exists = connection.exec_driver_sql(
        "SELECT 1 FROM sqlite_master WHERE name = ?", (FTS_TABLE,)).first()
    for statement in _SQLITE:
        connection.exec_driver_sql(statement)
    if not exists:
        connection.exec_driver_sql("INSERT INTO audit_event_fts(audit_event_fts) VALUES ('rebuild')")


def drop_search_index(connection: Connection) -> None:
    """Remove the word index (the migration's downgrade)."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"DROP INDEX IF EXISTS {PG_INDEX}")
        return
    connection.exec_driver_sql("DROP TRIGGER IF EXISTS audit_event_fts_insert")
    connection.exec_driver_sql("DROP TRIGGER IF EXISTS audit_event_fts_delete")
    connection.exec_driver_sql("DROP TABLE IF EXISTS audit_event_fts")


_present: dict[str, bool] = {}


def index_present() -> bool:
    """Whether this database has the word index (checked once per database)."""
    engine = db.session.get_bind().engine
    key = engine.url.render_as_string(hide_password=True)
    if key not in _present:
        if engine.dialect.name == "postgresql":
            query = ("SELECT 1 FROM pg_indexes WHERE indexname = 'ix_audit_event_details_tokens' "
                     "AND schemaname = current_schema()")
        else:
            query = "SELECT 1 FROM sqlite_master WHERE name = 'audit_event_fts'"
        _present[key] = db.session.execute(text(query)).first() is not None
    return _present[key]


def ensure_search_index() -> None:
    """Install the word index on a database migrated without it (reference data; no commit)."""
    install_search_index(db.session.connection())
    _present.clear()


# PostgreSQL keeps word frequencies only for words in most rows; it guesses the same for a word
# in three rows as for one in thousands, and then walks the whole trail newest-first looking
# for it. Words it knows to be common are left to that plan; others are looked up in the
# index first (a materialised set of matches), which is what rare words need.
COMMON_FREQUENCY = 0.01
_common: dict[str, tuple[float, frozenset[str]]] = {}
COMMON_TTL = 600.0


def common_words() -> frozenset[str]:
    """Words PostgreSQL's statistics say are in at least 1% of events (cached 10 minutes)."""
    key = db.session.get_bind().engine.url.render_as_string(hide_password=True)
    cached = _common.get(key)
    if cached is not None and time.monotonic() - cached[0] < COMMON_TTL:
        return cached[1]
    row = db.session.execute(text(
        "SELECT most_common_elems::text::text[], most_common_elem_freqs FROM pg_stats "
        "WHERE tablename = 'ix_audit_event_details_tokens' AND schemaname = current_schema()")).first()
    words: frozenset[str] = frozenset()
    if row is not None and row[0]:
        words = frozenset(w for w, f in zip(row[0], row[1], strict=False) if f >= COMMON_FREQUENCY)
    _common[key] = (time.monotonic(), words)
    return words


def tokens(words: str) -> list[str]:
    """The index's tokens of a search text, lower-case."""
    return [t.lower() for t in TOKEN.findall(words)]


def sqlite_match(words: list[str]) -> str:
    """An FTS5 query: every token, as a whole word."""
    return " AND ".join(f'"{t}"' for t in words)


def postgres_tsquery(words: list[str]) -> str:
    """A to_tsquery text: every token, as a whole word."""
    return " & ".join(words)


# The same expression as the index, so the planner uses it.
POSTGRES_MATCH = text(_PG_WORDS.format("audit_event.details")
                      + " @@ to_tsquery('simple'::regconfig, :tsquery)")


def install_after_create(target: Any, connection: Connection, **kw: Any) -> None:
    """Install the word index whenever the table is created with ``create_all``."""
    install_search_index(connection)


def autogenerate_include(obj, name, type_, reflected, compare_to) -> bool:
    """Alembic ``include_object``: leave out the hand-made word indexes (FTS5 tables, GIN) and partitions."""
    if type_ == "table" and name is not None and (name.startswith(FTS_TABLE) or is_partition(name)):
        return False
    return not (type_ == "index" and name == PG_INDEX)
