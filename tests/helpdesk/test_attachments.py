"""Attachments: allow-list by content and name, size limit, safe names, safe download, audit."""

from __future__ import annotations

import io

import pytest
from sqlalchemy import func, select

from core.extensions import db
from helpdesk.models import Ticket, TicketAttachment

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 100
PDF = b"%PDF-1.7\n1 0 obj\n<<>>\nendobj\n%%EOF\n"
EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00" + b"\x00" * 200
ZIP = b"PK\x05\x06" + b"\x00" * 18


@pytest.fixture
def app_config(app_config):
    """A 1 MB limit keeps the over-limit uploads small."""
    app_config["PACSDESK_MAX_UPLOAD_MB"] = 1
    app_config["MAX_CONTENT_LENGTH"] = 2 * 1024 * 1024
    return app_config


def _counts(app) -> tuple[int, int]:
    """(tickets, attachments) in the database."""
    with app.app_context():
        return (db.session.execute(select(func.count()).select_from(Ticket)).scalar_one(),
                db.session.execute(select(func.count()).select_from(TicketAttachment)).scalar_one())


def _file(client, category_id, *files):
    """Post a new ticket with ``files`` as (bytes, name) pairs."""
    return client.post("/tickets/new", content_type="multipart/form-data", data={
        "title": "t", "description": "d", "category_id": str(category_id()), "impact": "one",
        "urgency": "hours", "attachments": [(io.BytesIO(data), name) for data, name in files]})


@pytest.mark.parametrize(("data", "name"), [
    (PNG, "screen.png"), (b"\xff\xd8\xff\xe0" + b"\x00" * 50, "photo.JPG"),
    (b"GIF89a" + b"\x00" * 9, "a.gif"),
    (PDF, "report.pdf"), ("modality log: échec\n".encode(), "mr2.log"), (b"hello\n", "notes.txt"),
    (ZIP, "logs.zip")])
def test_allowed_types_are_stored_and_downloaded_with_safe_headers(client, login_as, category_id,
                                                                   data, name, audit_events):
    login_as("requester")
    response = _file(client, category_id, (data, name))
    assert response.status_code == 302
    number = response.headers["Location"].rsplit("/", 1)[-1]
    download = client.get(f"/tickets/{number}/attachments/1")
    assert download.status_code == 200
    assert download.data == data
    assert download.headers["Content-Disposition"].startswith("attachment;")
    assert download.headers["X-Content-Type-Options"] == "nosniff"
    assert audit_events("attachment.download", number)[0]["details"]["attachment_id"] == 1
    assert audit_events("attachment.upload", number)[0]["details"]["size"] == len(data)


@pytest.mark.parametrize(("data", "name", "message"), [
    (EXE, "invoice.pdf", b"does not match a .pdf file"),
    (EXE, "setup.exe", b"not accepted"),
    (b"<?php system($_GET[1]); ?>", "../../x.php", b"not accepted"),
    (b"text with a \x00 NUL", "notes.txt", b"does not match"),
    (b"\xff\xfe not utf-8 \x81", "log.log", b"does not match"),
    (PNG, "picture.pdf", b"does not match"),
    (b"", "empty.txt", b"the file is empty"),
])
def test_refused_uploads_say_why_and_save_nothing(client, login_as, category_id, app, data, name,
                                                  message):
    login_as("requester")
    response = _file(client, category_id, (PNG, "fine.png"), (data, name))
    assert response.status_code == 400
    assert message in response.data
    assert _counts(app) == (0, 0)


def test_file_over_the_limit_is_refused_and_nothing_saved(client, login_as, category_id, app):
    login_as("requester")
    response = _file(client, category_id, (b"a" * (1024 * 1024 + 1), "big.txt"))
    assert response.status_code == 400
    assert b"larger than the 1 MB limit" in response.data
    assert _counts(app) == (0, 0)


def test_request_over_the_server_limit_gets_the_413_page(client, login_as, category_id, app):
    login_as("requester")
    response = _file(client, category_id, (b"a" * (3 * 1024 * 1024), "huge.txt"))
    assert response.status_code == 413
    assert b"1 MB limit" in response.data
    assert _counts(app) == (0, 0)


@pytest.mark.parametrize(("raw", "expected"), [
    ("../../etc/passwd.txt", "passwd.txt"), ("..\\..\\boot.ini.txt", "boot.ini.txt"),
    ("bad\x01\x1b[31mname.txt", "bad31mname.txt"), ("日本語.txt", "attachment.txt"),
    ("<script>.txt", "script.txt"), ("report.PDF.txt", "report.PDF.txt")])
def test_download_names_are_made_safe(client, login_as, category_id, raw, expected):
    login_as("requester")
    number = _file(client, category_id, (b"plain text\n", raw)).headers["Location"].rsplit("/", 1)[-1]
    download = client.get(f"/tickets/{number}/attachments/1")
    assert download.headers["Content-Disposition"] == f'attachment; filename="{expected}"'
    download.close()


def test_reply_with_bad_attachment_saves_neither_reply_nor_files(client, login_as, file_ticket, app):
    login_as("requester")
    number = file_ticket()
    response = client.post(f"/tickets/{number}/reply", content_type="multipart/form-data",
                           data={"body": "see attached", "attachments": [(io.BytesIO(EXE), "a.pdf")]})
    assert response.status_code == 400 and b"does not match" in response.data
    page = client.get(f"/tickets/{number}").data
    assert b"see attached" not in page.split(b'id="timeline"')[1].split(b"</ol>")[0]
    assert _counts(app) == (1, 0)


def test_reply_attachment_is_listed_with_the_reply(client, login_as, file_ticket):
    login_as("requester")
    number = file_ticket()
    client.post(f"/tickets/{number}/reply", content_type="multipart/form-data",
                data={"body": "screenshot", "attachments": [(io.BytesIO(PNG), "error.png")]})
    page = client.get(f"/tickets/{number}").data.decode()
    assert "error.png" in page.split('id="timeline"')[1]


def test_too_many_files_at_once_are_refused(client, login_as, category_id, app):
    login_as("requester")
    response = _file(client, category_id, *[(PNG, f"s{i}.png") for i in range(11)])
    assert response.status_code == 400 and b"at most 10 files" in response.data
    assert _counts(app) == (0, 0)
