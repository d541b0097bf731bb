"""`pacsdesk inventory ...` commands."""

from __future__ import annotations

from pathlib import Path

import click
from flask.cli import AppGroup
from sqlalchemy import select

from core.extensions import db
from inventory import csv_io, services
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
def import_csv_command(file: Path, update: bool, no_verify: bool) -> None:
    """Import assets from FILE: all rows or none; bad rows are listed with line numbers."""
    try:
        result = csv_io.import_assets(file.read_bytes(), update=update, user=None,
                                      source=file.name, username="cli")
    except csv_io.CsvImportError as exc:
        db.session.rollback()
        for line, message in exc.problems:
            click.echo(f"{file.name}:{line}: {message}", err=True)
        raise click.ClickException(f"{len(exc.problems)} line(s) with problems; nothing was "
                                   f"imported.") from None
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
