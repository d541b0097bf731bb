"""The inventory and verification PDF: fleet, node availability, nodes down, warranties, disposals."""

from __future__ import annotations

import re
from datetime import date, timedelta

from audit.reports import services
from audit.trail.models import ObjectChange
from core.extensions import db
from core.timeutil import utcnow
from inventory.models import Asset, Sanitisation
from inventory.verification.models import NodeCheck, NodeState
from tests.audit.reports.conftest import local, pdf_text
from tests.helpers import fixture_event


def test_inventory_report_shows_uptime_failures_down_nodes_warranties_and_disposals(app, tmp_path):
    with app.app_context():
        pacs = Asset(asset_tag="PACS-01", name="Archive", kind="dicom_node", ae_title="ARCHIVE",
                     ip_address="127.1.1.10", port=104)
        ct = Asset(asset_tag="CT-02", name="CT scanner 2", kind="dicom_node", ae_title="CT2",
                   ip_address="127.1.1.20", port=104)
        old = Asset(asset_tag="WS-0007", name="Old workstation", kind="workstation",
                    status="disposed", serial_number="SN-7", holds_phi=True)
        ending = Asset(asset_tag="WS-0100", name="Front desk PC", kind="workstation",
                       warranty_end=date.today() + timedelta(days=20))
        db.session.add_all([pacs, ct, old, ending])
        db.session.flush()
        for day in range(1, 11):
            at = local(f"2026-03-{day:02d} 10:00")
            db.session.add(NodeCheck(asset_id=pacs.id, checked_at=at, outcome="ok", latency_ms=12.0))
            db.session.add(NodeCheck(asset_id=ct.id, checked_at=at, latency_ms=0.0,
                                     outcome="ok" if day <= 6 else "refused"))
        db.session.add(NodeState(asset_id=ct.id, state="down", consecutive_failures=4,
                                 down_since=local("2026-03-07 10:00"),
                                 last_ok_at=local("2026-03-06 10:00"), last_check_at=utcnow()))
        db.session.add(ObjectChange(object_type="asset", object_id=old.id,
                                    changed_at=local("2026-03-15 14:00"),
                                    field="status", old_value="retired", new_value="disposed"))
        db.session.add(Sanitisation(asset_id=old.id, method="purge", performed_on=date(2026, 3, 14),
                                    performed_by="Disk Shredders Inc.", witness="Sam Rivera",
                                    certificate_ref="DS-2026-118"))
        fixture_event("asset", pacs.asset_tag, ct.asset_tag, old.asset_tag, ending.asset_tag)
        db.session.commit()
        pdf = services.build_from_cli(services.validate_request("inventory", "2026-03-01", "2026-03-31"))
        db.session.commit()
    text = pdf_text(pdf, tmp_path)
    assert re.search(r"CT-02\s+CT scanner 2\s+CT2\s+10\s+4\s+60\.0%", text), text
    assert re.search(r"PACS-01\s+Archive\s+ARCHIVE\s+10\s+0\s+100\.0%", text)
    assert "refused 4" in text
    down = text[text.index("Nodes down now"):text.index("Warranties ended")]
    assert "CT-02" in down and "PACS-01" not in down and "2026-03-07 10:00" in down
    warranties = text[text.index("Warranties ended"):text.index("Disposals in the period")]
    assert "WS-0100" in warranties and "WS-0007" not in warranties
    disposals = text[text.index("Disposals in the period"):]
    assert re.search(r"WS-0007.*purge\s+2026-03-14\s+Disk", disposals, re.S), disposals
    assert "DS-2026-118" in "".join(disposals.split())
