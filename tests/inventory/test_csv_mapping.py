"""Importing other tools' CSV files: presets, the mapping page, saved mappings, delimiters, dates, labels."""

from __future__ import annotations

import base64
import io
import json
from html.parser import HTMLParser
from pathlib import Path

from sqlalchemy import func, select

from audit.trail.models import AuditEvent
from core.extensions import db
from inventory.models import Asset, AssetImportMapping
from tests.inventory.assets_support import (  # noqa: F401 - autouse fixtures
    _short_checks,
    add_asset,
)

SNIPE_HEADER = ("Company,Asset Name,Asset Tag,Model,Model No.,Category,Manufacturer,Serial,Purchased,"
                "Cost,EOL,Order Number,Supplier,Location,Notes,Status,Checked Out,Warranty,"
                "IP Address,AE Title,DICOM Port")
SNIPE_ROWS = (
    "St Mary's,Reading station 1,RAD-0001,OptiPlex 7010,D07D,Desktop,Dell,7XK2L3,2021-03-15,899.00,"
    "2027-03-15,PO-3301,Dell UK,Reading room 1,,Deployed,Ann Reader,36 months,,,",
    "St Mary's,CT scanner,CT-0002,Revolution,REV-1,Modality,GE,GE99881,2020-06-01,1,,,GE,CT suite,,"
    "Deployed,,,10.20.0.15,CT_SUITE_1,104",
    "St Mary's,Wall monitor,MON-0003,P2419H,P2419,Monitor,Dell,CN0X1,2019-01-10,150,,,,Room 2,,"
    "Broken,,,,,",
    "St Mary's,Old archive,SRV-0004,PowerEdge R730,R730,Server,Dell,SRV77,2016-05-20,9000,,,,DC,,"
    "Archived,,,,,",
    "St Mary's,Spare laptop,LAP-0005,Latitude 5520,,Laptop,Dell,LAT1,2022-02-02,1200,,,,Store,,"
    "Ready to Deploy,,,,,",
)
GLPI_HEADER = ("Name;Entity;Status;Manufacturer;Serial number;Type;Model;Operating system - Name;"
               "Location;Last update;Inventory number")
GLPI_ROWS = (
    "RAD-WS-01;Root entity > Radiology;In use;HP;CZC1234;Desktop;EliteDesk 800;Windows 10 Enterprise;"
    "Radiology > Room 1;2024-05-02 10:11;INV-1001",
    "PACS-SRV;Root entity;In use;Dell;SRV1;Server;PowerEdge R740;Red Hat Enterprise Linux;DC;"
    "2024-05-02 10:11;INV-1002",
)


class FormReader(HTMLParser):
    """The fields a browser would post from the page's form at ``action``: name -> value."""

    def __init__(self, action: str) -> None:
        super().__init__()
        self.action, self.inside, self.select = action, False, ""
        self.fields: dict[str, str] = {}
        self.labels: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.inside = values.get("action") == self.action
        elif not self.inside:
            return
        elif tag == "input" and values.get("type") in ("hidden", "text"):
            self.fields[values["name"]] = values.get("value", "")
        elif tag == "input" and values.get("type") == "checkbox" and "checked" in values:
            self.fields[values["name"]] = values.get("value", "y")
        elif tag == "select":
            self.select = values["name"]
            self.labels[values.get("aria-label", values["name"])] = values["name"]
            self.fields.setdefault(self.select, "")
        elif tag == "option" and "selected" in values:
            self.fields[self.select] = values.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.inside = False


def read_form(body: str) -> FormReader:
    """The mapping page's form as posted back unchanged."""
    reader = FormReader("/assets/import/map")
    reader.feed(body)
    assert reader.fields, "no mapping form on the page"
    return reader


def choose(form: FormReader, label: str, value: str) -> None:
    """Set the menu whose accessible name is ``label``."""
    form.fields[form.labels[label]] = value


def _upload(client, text: str | bytes, date_format: str = "iso", update: bool = False):
    raw = text.encode() if isinstance(text, str) else text
    data = {"file": (io.BytesIO(raw), "export.csv"), "date_format": date_format}
    if update:
        data["update"] = "y"
    return client.post("/assets/import", data=data, content_type="multipart/form-data")


def _post(client, form: FormReader, button: str):
    return client.post("/assets/import/map", data={**form.fields, button: button.capitalize()})


def _assets(app) -> dict[str, tuple]:
    with app.app_context():
        return {a.asset_tag: (a.kind, a.status, a.name) for a in db.session.scalars(select(Asset))}


def _text(response) -> str:
    return response.get_data(as_text=True).replace("&#39;", "'").replace("&amp;", "&")


def snipe_file(rows: tuple[str, ...] = SNIPE_ROWS) -> str:
    return "\r\n".join([SNIPE_HEADER, *rows]) + "\r\n"


def test_a_snipe_it_export_is_previewed_with_its_preset_and_usual_values_need_no_answer(client, login_as,
                                                                                       app):
    login_as("technician")
    response = _upload(client, snipe_file())
    assert response.status_code == 200
    body = _text(response)
    assert "5 rows, read as comma (,)-separated" in body
    assert "mapped with the Snipe-IT asset export preset" in body
    assert "<td>Reading station 1</td>" in body and "<td>OptiPlex 7010</td>" in body
    form = read_form(response.get_data(as_text=True))
    chosen = {label: form.fields[name] for label, name in form.labels.items()}
    assert chosen["Field for column Asset Tag"] == "asset_tag"
    assert chosen["Field for column Category"] == "kind"
    assert chosen["Field for column Purchased"] == "purchase_date"
    assert chosen["Field for column Model No."] == "ignore"
    # Custom fields named like PACS Desk's fields fill them; other unknown columns are ignored.
    assert chosen["Field for column IP Address"] == "ip_address"
    assert chosen["Field for column AE Title"] == "ae_title"
    assert chosen["Field for column DICOM Port"] == "ignore"
    # Usual values are mapped already; other categories become Other, with a warning naming them.
    assert chosen["Status Deployed"] == "in_service"
    assert chosen["Status Broken"] == "out_of_service"
    assert chosen["Status Ready to Deploy"] == "in_service"
    assert chosen["Category Laptop"] == "workstation"
    assert chosen["Category Modality"] == "other"
    assert chosen["Category Monitor"] == "other"
    assert "Category 'Monitor' has no match: it will be imported as Other" in body
    assert "Category 'Modality' has no match: it will be imported as Other" in body
    assert _assets(app) == {}


def test_a_mapped_value_and_column_import_every_row_and_fallbacks_are_named(client, login_as, app):
    login_as("technician")
    form = read_form(_upload(client, snipe_file()).get_data(as_text=True))
    choose(form, "Category Modality", "dicom_node")
    choose(form, "Field for column DICOM Port", "port")
    response = _post(client, form, "submit")
    assert response.status_code == 302, _text(response)
    assert _assets(app) == {
        "RAD-0001": ("workstation", "in_service", "Reading station 1"),
        "CT-0002": ("dicom_node", "in_service", "CT scanner"),
        "MON-0003": ("other", "out_of_service", "Wall monitor"),
        "SRV-0004": ("server", "retired", "Old archive"),
        "LAP-0005": ("workstation", "in_service", "Spare laptop"),
    }
    with app.app_context():
        node = db.session.scalar(select(Asset).where(Asset.asset_tag == "CT-0002"))
        assert (node.ip_address, node.ae_title, node.port) == ("10.20.0.15", "CT_SUITE_1", 104)
        assert str(node.purchase_date) == "2020-06-01"
        event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "asset.import"))
        details = json.loads(event.details)
        assert details["mapping_saved"] is True and details["mapping"]["preset"] == "snipe-it"
    listing = _text(client.get(response.headers["Location"]))
    assert "Import done: 5 asset(s) created" in listing
    assert "Category 'Monitor' has no match: imported as Other" in listing


def test_the_mapping_is_saved_and_offered_for_the_next_file_with_the_same_columns(client, login_as, app):
    login_as("technician")
    form = read_form(_upload(client, snipe_file()).get_data(as_text=True))
    choose(form, "Category Modality", "dicom_node")
    choose(form, "Field for column DICOM Port", "port")
    assert _post(client, form, "submit").status_code == 302

    second = snipe_file((SNIPE_ROWS[1].replace("CT-0002", "CT-0012").replace("10.20.0.15", "10.20.0.16"),))
    response = _upload(client, second)
    body = _text(response)
    assert "mapped with the mapping saved the last time a file with these columns was imported" in body
    again = read_form(response.get_data(as_text=True))
    assert again.fields[again.labels["Category Modality"]] == "dicom_node"
    assert again.fields[again.labels["Field for column DICOM Port"]] == "port"
    assert _post(client, again, "submit").status_code == 302
    assert _assets(app)["CT-0012"] == ("dicom_node", "in_service", "CT scanner")
    with app.app_context():
        assert db.session.scalar(select(func.count(AssetImportMapping.id))) == 1


def test_update_preview_remaps_a_column_and_asks_about_its_values(client, login_as, app):
    login_as("technician")
    form = read_form(_upload(client, snipe_file()).get_data(as_text=True))
    choose(form, "Field for column Supplier", "department")
    choose(form, "Field for column Category", "ignore")
    refreshed = _post(client, form, "refresh")
    assert refreshed.status_code == 200
    again = read_form(refreshed.get_data(as_text=True))
    assert again.fields[again.labels["Field for column Supplier"]] == "department"
    assert "Category Modality" not in again.labels
    body = _text(refreshed)
    assert "missing required column(s): kind" in body
    assert _assets(app) == {}


def test_a_glpi_export_uses_its_preset_and_asks_about_its_own_statuses(client, login_as, app):
    login_as("technician")
    response = _upload(client, "\ufeff" + "\n".join([GLPI_HEADER, *GLPI_ROWS]) + "\n")
    body = _text(response)
    assert "read as semicolon (;)-separated" in body and "the GLPI computer export preset" in body
    form = read_form(response.get_data(as_text=True))
    assert form.fields[form.labels["Field for column Inventory number"]] == "asset_tag"
    assert form.fields[form.labels["Field for column Operating system - Name"]] == "os_version"
    assert form.fields[form.labels["Field for column Last update"]] == "ignore"
    refused = _post(client, form, "submit")
    assert refused.status_code == 422
    assert "Choose what each of these values means before importing" in _text(refused)
    assert "Status 'In use'" in _text(refused)
    assert _assets(app) == {}
    choose(form, "Status In use", "in_service")
    assert _post(client, form, "submit").status_code == 302
    assert _assets(app) == {"INV-1001": ("workstation", "in_service", "RAD-WS-01"),
                            "INV-1002": ("server", "in_service", "PACS-SRV")}
    with app.app_context():
        assert db.session.scalar(select(Asset.os_version).where(Asset.asset_tag == "INV-1002")) == \
            "Red Hat Enterprise Linux"


def test_a_refused_mapped_file_names_its_delimiter_and_lines_and_imports_nothing(client, login_as, app):
    login_as("technician")
    text = "\n".join([GLPI_HEADER, GLPI_ROWS[0], GLPI_ROWS[1].replace("INV-1002", "INV-1001")]) + "\n"
    form = read_form(_upload(client, text).get_data(as_text=True))
    choose(form, "Status In use", "in_service")
    response = _post(client, form, "submit")
    assert response.status_code == 422
    body = _text(response)
    assert "Nothing was imported: 1 line needs fixing. The file was read as semicolon (;)-separated." in body
    assert "<td>3</td><td>asset_tag: duplicate tag INV-1001 (also on line 2)" in body
    assert _assets(app) == {}


NATIVE = "asset_tag{d}name{d}kind{d}status{d}purchase_date{d}warranty_end"


def test_semicolon_and_tab_files_are_read_and_named_in_their_errors(client, login_as, app):
    login_as("technician")
    semicolon = NATIVE.format(d=";") + "\nWS-1;Station; with a semicolon;workstation\n"
    body = _text(_upload(client, semicolon))
    assert "The file was read as semicolon (;)-separated." in body
    assert "<td>2</td><td>4 cells where the header has 6 columns" in body
    tab = NATIVE.format(d="\t") + "\nWS-2\tStation, with a comma\tworkstation\tin_service\t\t\n"
    assert _upload(client, tab).status_code == 302
    assert _assets(app) == {"WS-2": ("workstation", "in_service", "Station, with a comma")}
    comma = NATIVE.format(d=",") + "\nWS-3,Station,toaster,in_service,,\n"
    assert "The file was read as comma (,)-separated." in _text(_upload(client, comma))


def test_dates_are_read_day_first_or_month_first_only_when_chosen(client, login_as, app):
    login_as("technician")
    day_first = NATIVE.format(d=";") + "\nWS-1;Station;workstation;in_service;31/01/2021;01.02.2031\n"
    refused = _text(_upload(client, day_first))
    assert "purchase_date: bad date '31/01/2021' (use YYYY-MM-DD)" in refused
    assert _upload(client, day_first, date_format="dmy").status_code == 302
    month_first = NATIVE.format(d=",") + "\nWS-2,Station,workstation,in_service,01/31/2021,2031-02-01\n"
    assert "bad date '01/31/2021' (use YYYY-MM-DD or DD/MM/YYYY)" in _text(
        _upload(client, month_first, date_format="dmy"))
    assert _upload(client, month_first, date_format="mdy").status_code == 302
    with app.app_context():
        dates = {a.asset_tag: (str(a.purchase_date), str(a.warranty_end))
                 for a in db.session.scalars(select(Asset))}
    assert dates == {"WS-1": ("2021-01-31", "2031-02-01"), "WS-2": ("2021-01-31", "2031-02-01")}


def test_labels_as_shown_on_asset_pages_import_as_well_as_codes(client, login_as, app):
    login_as("technician")
    text = ("asset_tag,name,kind,status,hostname,ae_title,port,dicom_type,dicom_role\n"
            "PRN-1,Film printer,Printer / media burner,In maintenance,,,,,\n"
            "ARC-1,Archive,DICOM node,Out of service,arc.h.example,ARC,104,PACS archive,SCP (provider)\n"
            "RIS-1,Broker,dicom_node,in_service,ris.h.example,RIS,104,RIS / broker,both\n")
    response = _upload(client, text)
    assert response.status_code == 302, _text(response)
    assert _assets(app) == {"PRN-1": ("printer", "in_maintenance", "Film printer"),
                            "ARC-1": ("dicom_node", "out_of_service", "Archive"),
                            "RIS-1": ("dicom_node", "in_service", "Broker")}
    with app.app_context():
        types = dict(db.session.execute(select(Asset.asset_tag, Asset.dicom_type).where(
            Asset.dicom_type.is_not(None))).all())
        assert types == {"ARC-1": "pacs_archive", "RIS-1": "ris_broker"}
        assert db.session.scalar(select(Asset.dicom_role).where(Asset.asset_tag == "ARC-1")) == "scp"
    unknown = _text(_upload(client, text.replace("In maintenance", "Being fixed").replace("PRN-1", "PRN-2")))
    assert "status: unknown status 'Being fixed' (use one of In service (in_service)" in unknown


def test_the_cli_imports_with_a_mapping_file(runner, app, tmp_path: Path):
    path = tmp_path / "glpi.csv"
    path.write_bytes(("\n".join([GLPI_HEADER.replace("Last update", "Purchase date"),
                                 *(r.replace("2024-05-02 10:11", "02/05/2019") for r in GLPI_ROWS)])
                      + "\n").encode("cp1252"))
    mapping = tmp_path / "glpi-mapping.json"
    mapping.write_text(json.dumps({
        "preset": "glpi", "date_format": "dmy",
        "columns": {"Purchase date": "purchase_date", "Entity": "department"},
        "values": {"status": {"In use": "in_service"}, "kind": {"Server": "dicom_node"}}}))
    refused = runner.invoke(args=["inventory", "import-csv", "--mapping", str(mapping), str(path)])
    assert refused.exit_code == 1
    assert "glpi.csv:3: hostname: a DICOM node needs a hostname or an IP address" in refused.output
    assert "(read as semicolon (;)-separated); nothing was imported" in refused.output
    mapping.write_text(json.dumps({
        "preset": "glpi", "date_format": "dmy",
        "columns": {"Purchase date": "purchase_date", "Entity": "department"},
        "values": {"status": {"In use": "in_service"}}}))
    done = runner.invoke(args=["inventory", "import-csv", "--mapping", str(mapping), str(path)])
    assert done.exit_code == 0, done.output
    assert "2 asset(s) created" in done.output
    with app.app_context():
        ws = db.session.scalar(select(Asset).where(Asset.asset_tag == "INV-1001"))
        assert (str(ws.purchase_date), ws.department, ws.status) == ("2019-05-02", "Root entity > Radiology",
                                                                     "in_service")


def test_the_cli_without_a_mapping_uses_the_preset_and_names_unknown_values(runner, app, tmp_path: Path):
    path = tmp_path / "glpi.csv"
    path.write_text("\n".join([GLPI_HEADER, *GLPI_ROWS]) + "\n")
    result = runner.invoke(args=["inventory", "import-csv", str(path)])
    assert result.exit_code == 1
    assert "Columns and values mapped with the GLPI computer export preset." in result.output
    assert "glpi.csv:2: status: unknown status 'In use'" in result.output
    assert _assets(app) == {}


def test_the_cli_refuses_a_bad_mapping_file_naming_the_part(runner, app, tmp_path: Path):
    path = tmp_path / "a.csv"
    path.write_text(NATIVE.format(d=",") + "\nWS-1,Station,workstation,in_service,,\n")
    mapping = tmp_path / "m.json"
    for content, message in (
            ('{"columns": {"Serial": "serial"}}', "columns: 'Serial' maps to unknown field 'serial'"),
            ('{"values": {"status": {"Deployed": "live"}}}', "values.status: 'Deployed' maps to unknown "
                                                             "code 'live'"),
            ('{"date_format": "ymd"}', "date_format: 'ymd' is not one of iso, dmy, mdy"),
            ("{not json", "m.json: Expecting property name")):
        mapping.write_text(content)
        result = runner.invoke(args=["inventory", "import-csv", "--mapping", str(mapping), str(path)])
        assert result.exit_code == 1 and message in result.output, result.output
    assert _assets(app) == {}


def test_a_large_mapped_file_is_imported_by_the_job_and_its_mapping_saved(client, login_as, app, run_jobs):
    login_as("technician")
    rows = tuple(f"St Mary's,Station {i},WS-{i:05d},OptiPlex,,Desktop,Dell,S{i},2021-03-15,1,,,,Room,,"
                 f"Deployed,,,,," for i in range(1200))
    form = read_form(_upload(client, snipe_file(rows)).get_data(as_text=True))
    assert len(base64.b64decode(form.fields["data"]).splitlines()) == 1201
    response = _post(client, form, "submit")
    assert response.status_code == 302 and "/assets/import/jobs/" in response.headers["Location"]
    run_jobs()
    done = client.get(response.headers["Location"])
    assert done.status_code == 302
    assert "Import done: 1200 asset(s) created" in _text(client.get(done.headers["Location"]))
    with app.app_context():
        assert db.session.scalar(select(func.count(AssetImportMapping.id))) == 1


def test_only_those_who_manage_assets_may_post_a_mapping(client, login_as, auth, app):
    login_as("technician")
    form = read_form(_upload(client, snipe_file()).get_data(as_text=True))
    for role in ("compliance", "requester"):
        auth.logout()
        login_as(role)
        response = _post(client, form, "submit")
        assert response.status_code == 403, response.headers.get("Location")
    assert _assets(app) == {}


def test_a_mapping_form_not_sent_by_the_upload_page_is_a_bad_request(client, login_as, app):
    login_as("technician")
    form = read_form(_upload(client, snipe_file()).get_data(as_text=True))
    for name, value in (("data", "not base64!"), ("mapping", '{"columns": {"Serial": "serial"}}')):
        assert client.post("/assets/import/map", data={**form.fields, name: value,
                                                       "submit": "Import"}).status_code == 400
    assert _assets(app) == {}


def test_snipe_it_assets_without_a_name_are_named_after_model_and_tag_with_a_warning(client, login_as, app):
    login_as("technician")
    rows = (SNIPE_ROWS[0].replace("Reading station 1", ""),
            SNIPE_ROWS[3].replace("Old archive", "").replace("PowerEdge R730", ""))
    form = read_form(_upload(client, snipe_file(rows)).get_data(as_text=True))
    response = _post(client, form, "submit")
    assert response.status_code == 302, _text(response)
    assert _assets(app) == {"RAD-0001": ("workstation", "in_service", "OptiPlex 7010 (RAD-0001)"),
                            "SRV-0004": ("server", "retired", "SRV-0004")}
    assert "2 row(s) without a name (line(s) 2, 3) were named after their model and asset tag" in \
        _text(client.get(response.headers["Location"]))


def test_a_large_refused_file_lists_its_lines_and_delimiter_on_the_job_page(client, login_as, app, run_jobs):
    login_as("technician")
    rows = tuple(f"St Mary's;Station {i};WS-{i % 1199:05d};OptiPlex;;Desktop;Dell;S{i};15/03/2021;1;;;;Room;;"
                 f"Deployed;;;;;" for i in range(1200))
    form = read_form(_upload(client, "\n".join([SNIPE_HEADER.replace(",", ";"), *rows]) + "\n",
                             date_format="dmy").get_data(as_text=True))
    response = _post(client, form, "submit")
    assert response.status_code == 302
    run_jobs()
    body = _text(client.get(response.headers["Location"]))
    assert "Nothing was imported: 1 line needs fixing. The file was read as semicolon (;)-separated." in body
    assert "<td>1201</td><td>asset_tag: duplicate tag WS-00000 (also on line 2)" in body
    assert _assets(app) == {}
    with app.app_context():
        assert db.session.scalar(select(func.count(AssetImportMapping.id))) == 0
