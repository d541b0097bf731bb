"""Migration 0003 moves training certificates from the instance folder into the database and back."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.test_migrations import run_pacsdesk

PDF = b"%PDF-1.4 certificate of completion"
FILLERS = {"INTEGER": 1, "BIGINT": 1, "BOOLEAN": 0, "DATE": "2030-01-01", "DATETIME": "2030-01-01 00:00:00",
           "TEXT": "", "FLOAT": 0}


def insert(connection: sqlite3.Connection, table: str, **values) -> None:
    """Insert a row, filling every other NOT NULL column with a plain value of its type."""
    for _cid, name, kind, notnull, _default, _pk in connection.execute(f"PRAGMA table_info({table})"):
        if notnull and name not in values:
            values[name] = FILLERS.get(kind.split("(")[0].upper(), "x")
    columns = ", ".join(values)
    marks = ", ".join("?" for _ in values)
    connection.execute(f"INSERT INTO {table} ({columns}) VALUES ({marks})", list(values.values()))


def test_upgrade_reads_certificate_files_into_the_database_and_downgrade_writes_them_back(tmp_path: Path):
    database = tmp_path / "fresh.db"
    url = f"sqlite:///{database}"
    done = run_pacsdesk(tmp_path, url, "db", "upgrade", "0002")
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "instance" / "training_certificates"
    folder.mkdir(parents=True)
    (folder / "0123abcd.pdf").write_bytes(PDF)
    with sqlite3.connect(database) as connection:
        insert(connection, "user_account", id=1, username="clerk")
        insert(connection, "training_course", id=1, code="hipaa")
        insert(connection, "training_assignment", id=1, user_id=1, course_id=1)
        for row_id, stored in ((1, "0123abcd.pdf"), (2, "gone.pdf"), (3, None)):
            insert(connection, "training_completion", id=row_id, assignment_id=1, user_id=1, course_id=1,
                   recorded_by_id=1, certificate_file=stored,
                   certificate_name="cert.pdf" if stored else None)
    connection.close()

    done = run_pacsdesk(tmp_path, url, "db", "upgrade")
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(database) as connection:
        rows = connection.execute("SELECT id, certificate_size, certificate_data FROM training_completion "
                                  "ORDER BY id").fetchall()
    connection.close()
    assert rows == [(1, len(PDF), PDF), (2, None, None), (3, None, None)]

    (folder / "0123abcd.pdf").unlink()
    done = run_pacsdesk(tmp_path, url, "db", "downgrade", "0002")
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(database) as connection:
        stored = connection.execute("SELECT certificate_file FROM training_completion ORDER BY id").fetchall()
    connection.close()
    assert stored[1:] == [(None,), (None,)]
    assert stored[0][0].endswith(".pdf") and (folder / stored[0][0]).read_bytes() == PDF
