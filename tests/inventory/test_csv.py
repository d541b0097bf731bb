"""CSV import (line numbers, --update, encodings, in parts) and export (filters, formulas)."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest
from sqlalchemy import func, select

from audit.trail.chain import verify_chain
from audit.trail.history import history_of
from audit.trail.models import AuditEvent, ObjectChange
from core.extensions import db
from core.forms import carry_file
from core.jobs.models import Job, JobStatus
from inventory import csv_io
from inventory.jobs import IMPORT_JOB
from inventory.models import Asset
from inventory.verification.models import NodeState
from tests.helpers import inserts_refused
from tests.inventory.assets_support import (  # noqa: F401 - autouse fixtures
    _short_checks,
    add_asset,
)

HEADER = ("asset_tag,name,kind,status,location,department,manufacturer,model,serial_number,"
          "hostname,ip_address,ae_title,port,tls,dicom_type,warranty_end")
NODE = ("CT-01,CT scanner,dicom_node,in_service,L1,Radiology,GE,Revo,SN1,ct01.h.example,"
        "127.0.0.5,CT01,104,no,CT,2030-01-01")
WS = "RWS-01,Reading station,workstation,in_service,Room A,Radiology,Barco,Uniti,SN2,rws01.h.example,,,,,,"


def _count(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count(Asset.id)))


def _upload(client, text: str | bytes, update: bool = False):
    raw = text.encode() if isinstance(text, str) else text
    data = {"file": (io.BytesIO(raw), "assets.csv")}
    if update:
        data["update"] = "y"
    return client.post("/assets/import", data=data, content_type="multipart/form-data")


def test_import_creates_assets_and_records_history_and_one_audit_event(client, login_as, app):
    login_as("technician")
    response = _upload(client, "\n".join([HEADER, NODE, WS]) + "\n")
    assert response.status_code == 302
    with app.app_context():
        node = db.session.scalar(select(Asset).where(Asset.asset_tag == "CT-01"))
        assert (node.ae_title, node.port, node.dicom_type, node.modality) == (
            "CT01", 104, "modality", "CT")
        created = select(func.count(ObjectChange.id)).where(ObjectChange.field == "created")
        assert db.session.scalar(created) == 2
        events = list(db.session.scalars(select(AuditEvent).where(
            AuditEvent.action == "asset.import")))
        assert len(events) == 1
        assert json.loads(events[0].details)["created"] == 2


def test_one_bad_row_refuses_the_whole_file_and_lists_every_bad_line(client, login_as, app):
    login_as("technician")
    rows = [
        HEADER,
        NODE,
        WS.replace("workstation", "toaster"),
        NODE.replace("CT-01", "CT-02").replace("2030-01-01", "31/12/2030"),
        WS,
        NODE.replace("CT01", "A" * 17).replace("CT-01", "CT-03"),
        NODE.replace(",104,", ",70000,").replace("CT-01", "CT-04"),
    ]
    response = _upload(client, "\n".join(rows))
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert "Nothing was imported: 5 lines need fixing" in body
    assert "<td>3</td><td>kind: unknown kind &#39;toaster&#39;" in body
    assert "<td>4</td><td>warranty_end: bad date &#39;31/12/2030&#39; (use YYYY-MM-DD)" in body
    assert "<td>5</td><td>asset_tag: duplicate tag RWS-01 (also on line 3)" in body
    assert "<td>6</td><td>ae_title: an AE title has at most 16 characters" in body
    assert "<td>7</td><td>port: the port must be between 1 and 65535" in body
    assert _count(app) == 0


def test_missing_and_unknown_columns_are_reported_on_line_1(client, login_as, app):
    login_as("technician")
    body = _upload(client, "asset_tag,hostnam\nX,y\n").get_data(as_text=True)
    assert "unknown column(s): hostnam" in body
    assert "missing required column(s): name, kind" in body
    assert _count(app) == 0


def test_existing_tags_are_refused_unless_updating(client, login_as, app):
    add_asset(app, asset_tag="CT-01", kind="dicom_node", ip_address="127.0.0.5",
              ae_title="CT01", port=104, dicom_type="modality", modality="CT", location="Old")
    login_as("technician")
    body = _upload(client, f"{HEADER}\n{NODE}\n").get_data(as_text=True)
    assert "asset CT-01 already exists" in body
    response = _upload(client, f"{HEADER}\n{NODE}\n{WS}\n", update=True)
    assert response.status_code == 302
    with app.app_context():
        node = db.session.scalar(select(Asset).where(Asset.asset_tag == "CT-01"))
        assert node.location == "L1" and node.hostname == "ct01.h.example"
        changes = {c.field for c in history_of("asset", node.id)}
        assert {"location", "hostname", "manufacturer"} <= changes
    assert _count(app) == 2


def test_import_refuses_an_endpoint_already_used_by_another_asset(client, login_as, app):
    add_asset(app, asset_tag="CT-09", kind="dicom_node", ip_address="127.0.0.5",
              ae_title="CT01", port=104, dicom_type="modality", modality="CT")
    login_as("technician")
    body = _upload(client, f"{HEADER}\n{NODE}\n").get_data(as_text=True)
    assert "asset CT-09 already uses host 127.0.0.5, port 104 and AE title CT01" in body


def test_bom_and_windows_line_endings_are_accepted(client, login_as, app):
    login_as("technician")
    raw = ("\ufeff" + "\r\n".join([HEADER, NODE, WS]) + "\r\n").encode("utf-8")
    assert _upload(client, raw).status_code == 302
    with app.app_context():
        assert db.session.scalar(select(Asset.warranty_end).where(
            Asset.asset_tag == "CT-01")).isoformat() == "2030-01-01"
        assert db.session.scalar(select(Asset.name).where(
            Asset.asset_tag == "RWS-01")) == "Reading station"


def test_a_windows_1252_file_is_read_with_a_warning_naming_the_byte_and_line(client, login_as, app):
    login_as("technician")
    raw = (HEADER + "\n" + NODE + "\n" + WS.replace("Room A", "Salle été")).encode("cp1252")
    response = _upload(client, raw)
    assert response.status_code == 302
    page = client.get(response.headers["Location"]).get_data(as_text=True).replace("&#39;", "'")
    assert "The file is not UTF-8 (byte 0xE9 on line 3): it was read as Windows-1252" in page
    with app.app_context():
        assert db.session.scalar(select(Asset.location).where(Asset.asset_tag == "RWS-01")) == "Salle été"


def test_bytes_neither_utf8_nor_windows_1252_refuse_the_file_with_the_line(client, login_as, app):
    login_as("technician")
    raw = (HEADER + "\n" + NODE + "\n").encode() + WS.encode().replace(b"Room A", b"Room \x81")
    body = _upload(client, raw).get_data(as_text=True)
    assert "<td>3</td><td>the file is not UTF-8 text (byte 0x81" in body
    assert "save it as &#39;CSV UTF-8&#39;" in body
    assert _count(app) == 0


def _big_csv(n: int) -> str:
    lines = [HEADER]
    for i in range(n):
        if i % 2:
            lines.append(f"WS-{i:06d},Station {i},workstation,in_service,Room {i % 40},"
                         f"Radiology,Dell,Precision,SN{i},ws{i}.h.example,,,,,,2031-01-01")
        else:
            lines.append(f"N-{i:06d},Node {i},dicom_node,in_service,Room {i % 40},Radiology,"
                         f"GE,Revo,SN{i},n{i}.h.example,127.{i // 65536}.{i // 256 % 256}."
                         f"{i % 256},AE{i},104,no,CT,2031-01-01")
    return "\n".join(lines) + "\n"


def _import_events(app) -> list[dict]:
    with app.app_context():
        return [json.loads(event.details) for event in db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "asset.import").order_by(AuditEvent.seq))]


def test_fifty_thousand_rows_import_part_by_part_each_part_audited(runner, app, tmp_path: Path):
    path = tmp_path / "fleet.csv"
    path.write_text(_big_csv(50_000))
    result = runner.invoke(args=["inventory", "import-csv", "--no-verify", str(path)])
    assert result.exit_code == 0, result.output
    assert "50000 asset(s) created" in result.output
    assert _count(app) == 50_000
    events = _import_events(app)
    assert [(e["part"], e["parts"], e["rows"], e["created"]) for e in events] == [
        (part, 25, 2_000, 2_000) for part in range(1, 26)]
    assert events[24]["assets"][-2:] == ["N-049998", "WS-049999"]


def test_an_import_stopped_part_way_keeps_its_parts_and_the_same_file_imported_again_finishes_it(
        runner, app, tmp_path: Path, monkeypatch):
    monkeypatch.setattr(csv_io, "IMPORT_CHUNK", 2)  # five rows, three parts
    text = _big_csv(5)
    seen = []

    def stopped_in_the_second_part(written: int, total: int) -> None:
        seen.append((written, total))
        if len(seen) == 2:
            raise RuntimeError("the job worker was stopped")
        db.session.commit()  # what the job and the command do between two parts

    with app.app_context():
        with pytest.raises(RuntimeError, match="stopped"):
            csv_io.import_assets(text.encode(), update=False, user=None, source="fleet.csv",
                                 username="cli", between=stopped_in_the_second_part)
        db.session.rollback()
    assert seen == [(2, 5), (4, 5)]
    assert _count(app) == 2, "the first part committed, the second rolled back"
    path = tmp_path / "fleet.csv"
    path.write_text(text)
    result = runner.invoke(args=["inventory", "import-csv", str(path)])
    assert result.exit_code == 0, result.output
    assert "3 asset(s) created, 0 updated, 2 unchanged" in result.output
    assert "2 row(s) (line(s) 2, 3) are already in PACS Desk exactly as in the file" in result.output
    # The two new nodes, and N-000000: written by the stopped run, which never got to check it.
    assert "Checking 3 DICOM node(s) with C-ECHO" in result.output
    assert _count(app) == 5
    assert [(e["part"], e["parts"], e["created"], e["unchanged"]) for e in _import_events(app)] == [
        (1, 3, 2, 0), (1, 3, 0, 2), (2, 3, 2, 0), (3, 3, 1, 0)]
    with app.app_context():
        assert verify_chain().ok


def test_the_import_job_writes_a_large_file_part_by_part(app, queue_job, run_jobs, monkeypatch):
    monkeypatch.setattr(csv_io, "IMPORT_CHUNK", 2)
    job_id = queue_job(IMPORT_JOB, {"data": carry_file(_big_csv(5).encode()), "source": "fleet.csv"})
    assert run_jobs([IMPORT_JOB]) == [(job_id, JobStatus.DONE)]
    with app.app_context():
        assert db.session.get(Job, job_id).result["summary"] == "5 asset(s) created, 0 updated, 0 unchanged"
    assert [e["assets"] for e in _import_events(app)] == [
        ["N-000000", "WS-000001"], ["N-000002", "WS-000003"], ["N-000004"]]


def test_fifty_thousand_rows_with_one_bad_row_import_nothing(runner, app, tmp_path: Path):
    text = _big_csv(50_000).replace("N-049998,Node 49998,dicom_node", "N-049998,,dicom_node")
    path = tmp_path / "fleet.csv"
    path.write_text(text)
    result = runner.invoke(args=["inventory", "import-csv", str(path)])
    assert result.exit_code == 1
    assert "fleet.csv:50000: name: a name is required" in result.output
    assert _count(app) == 0


def test_a_large_upload_that_fails_part_way_says_what_was_kept_and_the_same_file_finishes_it(
        client, login_as, app, run_jobs, monkeypatch):
    monkeypatch.setattr(csv_io, "IMPORT_CHUNK", 500)
    login_as("technician")
    big = _big_csv(1_200)
    with inserts_refused(app, "asset", "NEW.asset_tag = 'WS-000701'"):
        response = _upload(client, big)
        assert response.status_code == 302 and "/assets/import/jobs/" in response.headers["Location"]
        run_jobs([IMPORT_JOB])
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    refused = r"Database error \((IntegrityError|RaiseException)\): refused "  # SQLite's, PostgreSQL's
    assert re.search(r"The import did not finish\.</strong> " + refused, page)
    assert "INSERT INTO" not in page
    assert "Any part of the file written before it stopped was kept" in page
    assert _count(app) == 500
    again = _upload(client, big)
    run_jobs([IMPORT_JOB])
    done = client.get(again.headers["Location"])
    assert done.status_code == 302
    shown = client.get(done.headers["Location"]).get_data(as_text=True)
    assert "Import done: 700 asset(s) created, 0 updated, 500 unchanged" in shown
    assert "500 row(s) (line(s) 2, 3, 4," in shown
    assert _count(app) == 1_200


def test_cli_import_update_flag(runner, app, tmp_path: Path):
    add_asset(app, asset_tag="RWS-01", location="Old room")
    path = tmp_path / "a.csv"
    path.write_text(f"{HEADER}\n{WS}\n")
    refused = runner.invoke(args=["inventory", "import-csv", str(path)])
    assert refused.exit_code == 1 and "a.csv:2: asset_tag: asset RWS-01 already exists" in \
        refused.output
    done = runner.invoke(args=["inventory", "import-csv", "--update", str(path)])
    assert done.exit_code == 0 and "1 updated" in done.output
    with app.app_context():
        assert db.session.scalar(select(Asset.location)) == "Room A"


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))


def test_export_follows_the_filters_and_is_audited(client, login_as, app):
    add_asset(app, asset_tag="RWS-01", department="Radiology")
    add_asset(app, asset_tag="PRN-01", kind="printer", department="Cardiology")
    login_as("compliance")
    response = client.get("/assets/export.csv?kind=printer")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = _rows(response.get_data(as_text=True))
    assert [r["asset_tag"] for r in rows] == ["PRN-01"]
    with app.app_context():
        event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "asset.export"))
        details = json.loads(event.details)
        assert details["count"] == 1 and details["filters"] == {"kind": "printer"}


def test_export_neutralises_spreadsheet_formulas_and_imports_back(client, login_as, app):
    add_asset(app, asset_tag="X-1", name="=HYPERLINK(\"http://evil\")", location="+1 room",
              department="-dept", notes="@SUM(A1)", model="plain")
    login_as("technician")
    row = _rows(client.get("/assets/export.csv").get_data(as_text=True))[0]
    assert row["name"] == "'=HYPERLINK(\"http://evil\")"
    assert (row["location"], row["department"], row["notes"], row["model"]) == (
        "'+1 room", "'-dept", "'@SUM(A1)", "plain")
    exported = client.get("/assets/export.csv").data
    assert _upload(client, exported, update=True).status_code == 302
    with app.app_context():
        assert db.session.scalar(select(Asset.name)) == "=HYPERLINK(\"http://evil\")"
        edits = select(func.count(ObjectChange.id)).where(ObjectChange.field != "created")
        assert db.session.scalar(edits) == 0


def test_cli_export_writes_every_asset(runner, app, tmp_path: Path):
    add_asset(app, asset_tag="RWS-01")
    add_asset(app, asset_tag="RWS-02")
    path = tmp_path / "out.csv"
    result = runner.invoke(args=["inventory", "export-csv", str(path)])
    assert result.exit_code == 0 and "2 asset(s) written" in result.output
    assert [r["asset_tag"] for r in _rows(path.read_text("utf-8"))] == ["RWS-01", "RWS-02"]


def test_cli_import_checks_the_imported_nodes(runner, app, tmp_path: Path, verification_scp):
    port = verification_scp()
    path = tmp_path / "nodes.csv"
    path.write_text(f"{HEADER}\n" + NODE.replace("127.0.0.5", "127.0.0.1").replace(
        ",104,", f",{port},") + "\n")
    result = runner.invoke(args=["inventory", "import-csv", str(path)])
    assert result.exit_code == 0, result.output
    assert "1 answered, 0 did not" in result.output
    with app.app_context():
        assert db.session.scalar(select(NodeState.state)) == "up"


def test_web_import_checks_new_nodes_in_the_background(run_jobs, client, login_as, app, verification_scp):
    port = verification_scp()
    login_as("technician")
    row = NODE.replace("127.0.0.5", "127.0.0.1").replace(",104,", f",{port},")
    response = _upload(client, f"{HEADER}\n{row}\n")
    assert response.status_code == 302
    run_jobs()
    with app.app_context():
        assert db.session.scalar(select(NodeState.state)) == "up"


@pytest.mark.parametrize(("raw", "line", "message"), [
    (b"", 1, "the file is empty"),
    (HEADER.encode() + b"\r\n", 1, "the file has a header but no rows"),
    (HEADER.encode("utf-16"), 1, "the file is UTF-16 text"),
    (f"{HEADER}\n{WS},extra\n".encode(), 2, "17 cells where the header has 16 columns"),
    (f"asset_tag,name,kind,name\n{'x,y,workstation,z'}\n".encode(), 1,
     "column(s) given twice: name"),
    (f"{HEADER}\n{WS.replace(',in_service,', ',disposed,')}\n".encode(), 2,
     "status: dispose of an asset from its page"),
])
def test_malformed_files_are_refused_with_a_line_number(client, login_as, app, raw, line,
                                                        message):
    login_as("technician")
    body = _upload(client, raw).get_data(as_text=True).replace("&#39;", "'")
    assert f"<td>{line}</td><td>" in body and message in body
    assert _count(app) == 0


def test_duplicate_endpoints_inside_the_file_name_the_other_line(client, login_as, app):
    login_as("technician")
    second = NODE.replace("CT-01", "CT-02").replace("ct01", "ct02")
    body = _upload(client, f"{HEADER}\n{NODE}\n{second}\n").get_data(as_text=True)
    assert "<td>3</td><td>ae_title: the same host, port and AE title is on line 2" in body
