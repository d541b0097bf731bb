"""Demo fleet for `pacsdesk demo`: modalities, archive, router, reading stations, printers."""

from __future__ import annotations

from datetime import timedelta

from audit import record
from core.demo import DemoContext
from core.extensions import db
from inventory.asset_rules import local_today
from inventory.models import Asset, AssetKind, AssetStatus, Sanitisation

# tag, name, modality/type, manufacturer, model, location, department, AE title
NODES = (
    ("CT-01", "CT scanner 1 (ED)", "CT", "Siemens", "SOMATOM go.Top", "Main bldg, L0, room 012",
     "Emergency", "CT01_ED"),
    ("CT-02", "CT scanner 2", "CT", "GE HealthCare", "Revolution EVO", "Main bldg, L1, room 118",
     "Radiology", "CT02"),
    ("MR-01", "MRI 1.5T", "MR", "Philips", "Ingenia 1.5T", "Imaging wing, L0, room 004",
     "Radiology", "MR01"),
    ("MR-02", "MRI 3T", "MR", "Siemens", "MAGNETOM Vida", "Imaging wing, L0, room 006",
     "Radiology", "MR02_3T"),
    ("CR-01", "CR reader, ED", "CR", "Fujifilm", "FCR Prima T2", "Main bldg, L0, room 015",
     "Emergency", "CR01"),
    ("DX-01", "Digital X-ray room 3", "DX", "Carestream", "DRX-Evolution Plus",
     "Main bldg, L1, room 121", "Radiology", "DX_ROOM3"),
    ("US-01", "Ultrasound, women's health", "US", "GE HealthCare", "LOGIQ E10",
     "Women's health, L2", "Women's health", "US01_WH"),
    ("US-02", "Ultrasound, portable", "US", "Philips", "Lumify", "Radiology, L1", "Radiology",
     "US02_PORT"),
    ("MG-01", "Mammography", "MG", "Hologic", "3Dimensions", "Women's health, L2, room 210",
     "Women's health", "MG01"),
)
INFRA = (
    ("PACS-ARCH-01", "Primary PACS archive", "pacs_archive", "dcm4che", "dcm4chee-arc 5",
     "Data centre, rack B4", "PACS team", "DCM4CHEE"),
    ("DICOM-RTR-01", "DICOM router", "router", "Laurel Bridge", "Compass",
     "Data centre, rack B4", "PACS team", "ROUTER01"),
)
WORKSTATIONS = (
    ("RWS-01", "Reading station 1", "Barco", "Coronis Uniti", "Reading room A"),
    ("RWS-02", "Reading station 2", "Barco", "Coronis Uniti", "Reading room A"),
    ("RWS-03", "Reading station 3 (mammo)", "Barco", "Coronis Uniti MDMC-12133",
     "Women's health, reading"),
    ("RWS-04", "Reading station, home reporting", "Dell", "Precision 3660", "Remote"),
)
PRINTERS = (
    ("PRN-FILM-01", "Film printer", "Fujifilm", "DRYPIX 7000", "Radiology, L1"),
    ("PRN-CD-01", "Patient CD/DVD burner", "Rimage", "Catalyst 6000", "Front desk, radiology"),
)


def seed_assets(ctx: DemoContext) -> None:
    """Add a believable radiology fleet; nodes point at a loopback port nobody listens on."""
    today = local_today()
    technicians = ctx.users_with_role("technician")
    port = 41040
    assets: list[Asset] = []
    for i, (tag, name, code, maker, model, location, dept, aet) in enumerate(NODES):
        assets.append(Asset(
            asset_tag=tag, name=name, kind=AssetKind.DICOM_NODE, location=location,
            department=dept, manufacturer=maker, model=model,
            serial_number=f"{maker[:3].upper()}{ctx.rng.randint(100000, 999999)}",
            hostname=f"{tag.lower()}.imaging.hospital.example", ip_address="127.0.0.1",
            ae_title=aet, port=port + i, dicom_role="both", dicom_type="modality",
            modality=code, holds_phi=True, os_version=f"VA{ctx.rng.randint(10, 60)}",
            purchase_date=today - timedelta(days=ctx.rng.randint(400, 2500)),
            warranty_end=today + timedelta(days=ctx.rng.choice((12, 45, 80, 200, 400, 700))),
        ))
    for j, (tag, name, dtype, maker, model, location, dept, aet) in enumerate(INFRA):
        assets.append(Asset(
            asset_tag=tag, name=name, kind=AssetKind.DICOM_NODE, location=location,
            department=dept, manufacturer=maker, model=model, serial_number=f"SRV-{j + 1:04d}",
            hostname=f"{tag.lower()}.imaging.hospital.example", ip_address="127.0.0.1",
            ae_title=aet, port=port + 20 + j, dicom_role="both", dicom_type=dtype,
            holds_phi=dtype == "pacs_archive", os_version="Rocky Linux 9.4",
            purchase_date=today - timedelta(days=900), warranty_end=today + timedelta(days=60),
        ))
    for k, (tag, name, maker, model, location) in enumerate(WORKSTATIONS):
        assets.append(Asset(
            asset_tag=tag, name=name, kind=AssetKind.WORKSTATION, location=location,
            department="Radiology", manufacturer=maker, model=model,
            serial_number=f"WS{ctx.rng.randint(10000, 99999)}",
            hostname=f"{tag.lower()}.hospital.example", os_version="Windows 11 Enterprise 23H2",
            holds_phi=True, assigned_user_id=technicians[k % len(technicians)].id
            if technicians else None,
            purchase_date=today - timedelta(days=700 + 30 * k),
            warranty_end=today + timedelta(days=(25, 300, 88, 500)[k]),
        ))
    for tag, name, maker, model, location in PRINTERS:
        assets.append(Asset(
            asset_tag=tag, name=name, kind=AssetKind.PRINTER, location=location,
            department="Radiology", manufacturer=maker, model=model,
            serial_number=f"PR{ctx.rng.randint(10000, 99999)}", holds_phi=tag == "PRN-CD-01",
            purchase_date=today - timedelta(days=1500), warranty_end=today - timedelta(days=100),
        ))
    old = Asset(asset_tag="RWS-OLD-07", name="Reading station 7 (replaced)",
                kind=AssetKind.WORKSTATION, status=AssetStatus.RETIRED,
                location="Reading room B", department="Radiology", manufacturer="HP",
                model="Z440", serial_number="CZC5123XYZ", holds_phi=True, verify_enabled=False,
                purchase_date=today - timedelta(days=3000))
    assets.append(old)
    db.session.add_all(assets)
    db.session.flush()
    recorder = technicians[0] if technicians else None
    for asset in assets:
        record("asset.create", object_type="asset", object_id=asset.asset_tag, user=recorder,
               details={"kind": asset.kind, "name": asset.name, "demo": True})
    old.status, old.verify_enabled = AssetStatus.DISPOSED, False
    db.session.add(Sanitisation(
        asset_id=old.id, method="purge", performed_on=today - timedelta(days=30),
        performed_by="Min-jun Kim", witness="Sam Rivera", certificate_ref="SAN-2026-0042",
        recorded_by_id=recorder.id if recorder else None))
    record("asset.dispose", object_type="asset", object_id=old.asset_tag, user=recorder,
           details={"holds_phi": True, "method": "purge", "certificate_ref": "SAN-2026-0042", "demo": True})
    ctx.notes.append(f"Inventory: {len(assets)} assets. The demo DICOM nodes point at "
                     f"127.0.0.1 ports {port}-{port + 21} where nothing listens, so they "
                     f"show as down until you start an SCP there (e.g. `storescp --ignore "
                     f"{port}`) or edit their addresses.")
