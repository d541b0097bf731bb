"""`pacsdesk inventory ...` commands."""

from __future__ import annotations

import json
from pathlib import Path

import click
from flask.cli import AppGroup
from sqlalchemy import select

from core.database import commit_keeping_loaded
from core.extensions import db
from inventory import csv_io, csv_mapping, csv_read, services
from inventory.models import Asset
from inventory.verification.cli import verify_command
from inventory.verification.models import CheckTrigger
from inventory.verification.services import run_checks

inventory_group = AppGroup("inventory", help="Assets and DICOM nodes.")
inventory_group.add_command(verify_command)


@inventory_group.command("export-csv")
@click.argument("file", type=click.Path(dir_okay=False, writable=True, path_type=Path))
def export_csv_command(file: Path) -> None:
    """Write every asset to FILE as CSV ('-' for standard output)."""
    assets = list(db.session.scalars(services.asset_query(services.AssetFilters())))
    states = services.node_states([a.id for a in assets if a.is_dicom_node])
    with click.open_file(str(file), "w", encoding="utf-8") as out:
        count = csv_io.write_csv(assets, out, states)
    services.record_export(services.AssetFilters(), count, via="cli", username="cli")
    db.session.commit()
    if str(file) != "-":
        click.echo(f"{count} asset(s) written to {file}.")


@inventory_group.command("import-csv")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--update", is_flag=True, help="Update assets whose tag exists instead of "
                                             "refusing them.")
@click.option("--no-verify", is_flag=True, help="Do not C-ECHO the imported DICOM nodes now "
                                                "(the scheduled sweep checks them).")
@click.option("--mapping", "mapping_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="JSON file mapping the file's columns and values to PACS Desk's (see the admin "
                   "guide). Without it: the mapping saved for this header, else a preset "
                   "(Snipe-IT, GLPI), else the column names.")
def import_csv_command(file: Path, update: bool, no_verify: bool, mapping_file: Path | None) -> None:
    """Import assets from FILE: every row checked first; bad rows are listed with line numbers."""
    raw = file.read_bytes()
    try:
        mapping = _mapping_for(raw, mapping_file)
        result = csv_io.import_assets(raw, update=update, user=None, source=file.name, username="cli",
                                      mapping=mapping, between=lambda _done, _total: commit_keeping_loaded())
    except csv_read.CsvImportError as exc:
        db.session.rollback()
        for warning in exc.warnings:
            click.echo(f"{file.name}: warning: {warning}", err=True)
        for line, message in exc.problems:
            click.echo(f"{file.name}:{line}: {message}", err=True)
        read_as = f" ({exc.read_as})" if exc.read_as else ""
        raise click.ClickException(f"{len(exc.problems)} line(s) with problems{read_as}; nothing "
                                   f"was imported.") from None
    for warning in result.warnings:
        click.echo(f"{file.name}: warning: {warning}", err=True)
    db.session.commit()
    click.echo(f"Imported {file.name}: {result.summary()}.")
    if result.verify_ids and not no_verify:
        click.echo(f"Checking {len(result.verify_ids)} DICOM node(s) with C-ECHO...")
        nodes = [asset for i in range(0, len(result.verify_ids), services.CHUNK)
                 for asset in db.session.scalars(select(Asset).where(
                     Asset.id.in_(result.verify_ids[i:i + services.CHUNK])))]
        checks = run_checks(nodes, CheckTrigger.SAVE, audit_each=False, username="cli")
        db.session.commit()
        click.echo(f"{checks.ok} answered, {checks.failed} did not (see each node's page).")


def _mapping_for(raw: bytes, mapping_file: Path | None) -> csv_mapping.Mapping | None:
    """The mapping file's mapping, else the one chosen from the header (None: PACS Desk's own columns)."""
    if mapping_file is not None:
        try:
            return csv_mapping.Mapping.from_json(json.loads(mapping_file.read_text("utf-8")))
        except (ValueError, UnicodeDecodeError) as exc:
            raise click.ClickException(f"{mapping_file.name}: {exc}") from None
    header = csv_read.read_file(raw, check_header=False).header
    if csv_mapping.is_native(header):
        return None
    mapping, source = csv_mapping.choose_mapping(header)
    click.echo(f"Columns and values mapped with {source}.")
    return mapping
