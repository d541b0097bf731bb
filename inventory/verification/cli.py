"""`pacsdesk inventory verify`: C-ECHO DICOM nodes now and report, for people or scripts."""

from __future__ import annotations

import json

import click
from flask.cli import with_appcontext
from sqlalchemy import select

from core.extensions import db
from inventory.models import Asset
from inventory.verification.services import CheckTrigger, run_checks, verifiable_nodes


def _assets_by_tag(tags: tuple[str, ...]) -> list[Asset]:
    """The DICOM nodes named by ``tags`` (each once); a bad tag is a usage error."""
    found: dict[str, Asset] = {}
    for tag in tags:
        asset = db.session.execute(
            select(Asset).where(Asset.asset_tag == tag.strip())).scalar_one_or_none()
        if asset is None:
            raise click.BadParameter(f"there is no asset with tag {tag!r}", param_hint="--asset")
        if not asset.is_dicom_node:
            raise click.BadParameter(f"{asset.asset_tag} is not a DICOM node",
                                     param_hint="--asset")
        found[asset.asset_tag] = asset
    return list(found.values())


@click.command("verify")
@click.option("--asset", "tags", multiple=True, metavar="TAG",
              help="Asset tag of a node to check (repeatable). Default: every enabled node.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of lines.")
@with_appcontext
def verify_command(tags: tuple[str, ...], as_json: bool) -> None:
    """C-ECHO DICOM nodes now; exit 0 when every checked node answered, 1 otherwise."""
    assets = _assets_by_tag(tags) if tags else verifiable_nodes()
    result = run_checks(assets, CheckTrigger.MANUAL, audit_each=True, username="cli")
    db.session.commit()
    if as_json:
        click.echo(json.dumps([
            {"asset_tag": r.asset_tag, "ae_title": r.ae_title, "host": r.host, "port": r.port,
             "outcome": r.outcome, "latency_ms": r.latency_ms, "detail": r.detail,
             "state": r.state}
            for r in result.results], indent=2))
    else:
        for r in result.results:
            click.echo(f"{r.asset_tag:<16} {r.outcome:<24} {r.state:<9} {r.latency_ms:>8.1f} ms  "
                       f"{r.ae_title}@{r.host}:{r.port}  {r.detail}")
        if not result.results and not result.skipped:
            click.echo("No DICOM node to verify.")
    for tag, reason in result.skipped:
        click.echo(f"{tag}: not checked: {reason}", err=True)
    if not result.all_ok:
        raise SystemExit(1)
