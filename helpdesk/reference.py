"""Reference data: the PACS team's ticket categories and the default service levels."""

from __future__ import annotations

from sqlalchemy import select

from core.extensions import db
from helpdesk.models import Category, SlaPolicy
from helpdesk.sla import DEFAULT_SLAS

CATEGORIES: tuple[tuple[str, str, str], ...] = (
    ("study_not_arriving", "Study not arriving / images missing",
     "A study or some of its images did not reach PACS or the viewer."),
    ("priors_missing", "Prior studies missing",
     "Earlier studies of the patient are not shown for comparison."),
    ("worklist", "Modality worklist / patient not on worklist",
     "The modality cannot find the patient or the order on its worklist."),
    ("viewer_workstation", "Viewer or workstation problem",
     "The viewer is slow, crashes, or a reading workstation misbehaves."),
    ("login_access", "Login or access", "Cannot log in, locked out, or missing access."),
    ("report_interface", "Report / RIS-HIS interface",
     "Reports, orders or results do not flow between PACS, RIS and HIS."),
    ("media_cd_print", "CD burning / printing / media import",
     "Burning or importing patient CDs, film or paper printing."),
    ("hardware", "Hardware", "Monitors, keyboards, dictation microphones, printers."),
    ("dicom_node_down", "DICOM node down",
     "A modality, archive or router does not answer DICOM (often opened automatically)."),
    ("other", "Other", "Anything else."),
)


def load_helpdesk_reference_data() -> None:
    """Add missing categories and SLA policies; never overwrite an administrator's edits."""
    codes = set(db.session.execute(select(Category.code)).scalars())
    for order, (code, label, description) in enumerate(CATEGORIES):
        if code not in codes:
            db.session.add(Category(code=code, label=label, description=description,
                                    sort_order=(order + 1) * 10))
    priorities = set(db.session.execute(select(SlaPolicy.priority)).scalars())
    for priority, (response, resolution) in DEFAULT_SLAS.items():
        if priority not in priorities:
            db.session.add(SlaPolicy(priority=priority, response_minutes=response,
                                     resolution_minutes=resolution))
    db.session.flush()
