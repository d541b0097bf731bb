"""The certificate of destruction for a retention run: what went, the ids, and digests one can recompute."""

from __future__ import annotations

import hashlib
import re

from sqlalchemy import select

from audit.reports.models import ReportJob
from audit.retention import engine as retention
from audit.retention.destroyed_ids import record_batch
from audit.retention.models import LegalHold, RetentionRun
from core.extensions import db
from tests.audit.compliance_fixtures import at
from tests.audit.reports.conftest import local, pdf_text
from tests.audit.retention.test_retention import set_policy
from tests.helpers import fixture_event


def add_run(app, status: str = "completed", started_by_id: int | None = None) -> int:
    """A retention run as the engine records it, and a hold in force during it."""
    with app.app_context():
        run = RetentionRun(
            status=status, started_at=local("2026-03-02 01:00"), heartbeat_at=local("2026-03-02 01:05"),
            finished_at=local("2026-03-02 01:06") if status != "running" else None,
            started_by="privacy.garcia", started_by_id=started_by_id,
            policies=({"tickets": {"years": 7, "months": 0, "days": 0, "anchor": "closed",
                                             "enabled": True, "period": "7 years"}}),
            counts=({"tickets": 1234}), held_counts=({"tickets": 5}),
            class_digests=({"tickets": "ab" * 32}), digest="cd" * 32, total=1234)
        db.session.add(run)
        if started_by_id:
            db.session.add(LegalHold(reason="Litigation 2026-17", placed_by_id=started_by_id,
                                     placed_at=local("2026-01-10 10:00"), object_type="ticket",
                                     object_key="PD-000042"))
        db.session.flush()
        fixture_event("retention_run", run.id)
        fixture_event("legal_hold", *db.session.execute(select(LegalHold.id)).scalars())
        db.session.commit()
        return run.id


def test_certificate_lists_counts_policies_holds_digest_and_signatures(app, runner, make_user, tmp_path):
    officer = make_user("compliance", "privacy.garcia", full_name="Elena Garcia")
    run_id = add_run(app, started_by_id=officer.id)
    out = tmp_path / "cert.pdf"
    result = runner.invoke(args=["reports", "build", "retention", "--run", str(run_id), "-o", str(out)])
    assert result.exit_code == 0, result.output
    text = pdf_text(out.read_bytes(), tmp_path)
    assert "Certificate of destruction" in text
    assert "1,234" in text and "7 years after closed" in text
    flat = "".join(text.split())
    assert "ab" * 32 in flat and "cd" * 32 in flat
    assert "Litigation 2026-17" in text and "ticket PD-000042" in text
    assert "Elena Garcia (privacy.garcia)" in text
    words = " ".join(text.split())
    assert "in the normal course of business, under Riverside General Hospital's records " \
           "retention schedule" in words
    assert "Witness or approver" in text


def test_unknown_or_unfinished_run_is_refused(app, runner, tmp_path):
    out = tmp_path / "cert.pdf"
    unknown = runner.invoke(args=["reports", "build", "retention", "--run", "999", "-o", str(out)])
    assert unknown.exit_code == 2 and "There is no retention run #999" in unknown.output
    running = add_run(app, status="running")
    busy = runner.invoke(args=["reports", "build", "retention", "--run", str(running), "-o", str(out)])
    assert busy.exit_code == 2 and "still running" in busy.output
    missing = runner.invoke(args=["reports", "build", "retention", "-o", str(out)])
    assert missing.exit_code == 2 and "needs the number of a retention run" in missing.output
    assert not out.exists()


ID_TOKEN = re.compile(r"^(?:\d+(?:\u2013\d+)?|[A-Za-z0-9_-]{16}),?$")


def listed_ids(text: str, classes: set[str]) -> dict[str, list[str]]:
    """The ids the certificate's appendix lists, per class, ranges expanded, in the order printed."""
    found: dict[str, list[str]] = {}
    current = None
    for line in text[text.index("Appendix: ids of the records destroyed"):].splitlines():
        tokens = line.split()
        if tokens and tokens[0] in classes:
            current, tokens = tokens[0], tokens[1:]
        if not tokens or current is None or not all(ID_TOKEN.match(t) for t in tokens):
            continue
        for token in tokens:
            first, dash, last = token.rstrip(",").partition("\u2013")
            found.setdefault(current, []).extend(
                str(n) for n in range(int(first), int(last) + 1)) if dash else found.setdefault(
                current, []).append(first)
    return found


def sha256_lines(values: list[str]) -> str:
    """SHA-256 (hex) of the values, each followed by a newline, as the certificate says."""
    return hashlib.sha256("".join(f"{v}\n" for v in values).encode()).hexdigest()


def test_certificate_lists_the_ids_destroyed_and_they_recompute_its_digests(app, client, login_as, runner,
                                                                            scratch_class, frozen, tmp_path):
    ids = [scratch_class(f"T-{n}", at(2020, n)) for n in range(1, 6)]
    scratch_class("T-young", at(2036))
    with app.app_context():
        reports = [ReportJob(kind="access-audit", params={}, created_at=at(2030, n)) for n in (1, 2, 3)]
        db.session.add_all(reports)
        db.session.flush()
        report_ids = [job.id for job in reports]
        fixture_event("report", *report_ids)
        db.session.commit()
    set_policy(app, "test_records", 5)
    set_policy(app, "report_files", 1)
    login_as("compliance", "privacy.garcia")
    held = client.post("/retention/holds/new", data={"reason": "Litigation 2036-14", "kind": "ticket",
                                                     "object_key": "T-3"})
    assert held.status_code == 302
    with app.app_context():
        run_id = retention.run_retention("privacy.garcia").run_id
        run = db.session.get(RetentionRun, run_id)
        stored = dict(run.class_digests), run.digest
    out = tmp_path / "cert.pdf"
    result = runner.invoke(args=["reports", "build", "retention", "--run", str(run_id), "-o", str(out)])
    assert result.exit_code == 0, result.output
    text = pdf_text(out.read_bytes(), tmp_path)

    assert re.search(r"test_records\s+1\u20132, 4\u20135\n", text), text
    listed = listed_ids(text, set(stored[0]))
    assert listed["test_records"] == [str(i) for i in ids if i != ids[2]]
    assert sorted(listed["report_files"]) == sorted(report_ids)
    flat = "".join(text.split())
    for key, values in listed.items():
        digest = sha256_lines(values)
        assert digest == stored[0][key] and digest in flat
    run_digest = hashlib.sha256("".join(f"{key}:{sha256_lines(listed[key])}\n"
                                        for key in sorted(listed)).encode()).hexdigest()
    assert run_digest == stored[1] and run_digest in flat
    words = " ".join(text.split())
    assert "each followed by a newline" in words and words.count("The ids listed give this digest.") == 2


def test_a_big_certificate_lists_every_id_over_many_pages_and_still_recomputes(app, runner, make_user,
                                                                               tmp_path):
    officer = make_user("compliance", "privacy.garcia")
    run_id = add_run(app, started_by_id=officer.id)
    destroyed = list(range(1, 40_001, 2))           # 20,000 ids, none consecutive: no ranges
    digest = sha256_lines([str(i) for i in destroyed])
    with app.app_context():
        run = db.session.get(RetentionRun, run_id)
        run.class_digests = {"tickets": digest}
        run.counts = {"tickets": len(destroyed)}
        run.digest = hashlib.sha256(f"tickets:{digest}\n".encode()).hexdigest()
        for start in range(0, len(destroyed), 10_000):
            record_batch(run_id, "tickets", destroyed[start:start + 10_000])
        fixture_event("retention_run", run_id)
        db.session.commit()
    out = tmp_path / "cert.pdf"
    result = runner.invoke(args=["reports", "build", "retention", "--run", str(run_id), "-o", str(out)])
    assert result.exit_code == 0, result.output
    text = pdf_text(out.read_bytes(), tmp_path)
    assert listed_ids(text, {"tickets"})["tickets"] == [str(i) for i in destroyed]
    assert digest in "".join(text.split()) and "The ids listed give this digest." in text
    pages = re.findall(r"Page (\d+) of (\d+)", text)
    assert len(pages) > 10 and all(total == pages[0][1] for _, total in pages)


def test_a_run_from_before_id_lists_says_its_ids_were_not_recorded(app, runner, tmp_path):
    run_id = add_run(app)
    out = tmp_path / "cert.pdf"
    result = runner.invoke(args=["reports", "build", "retention", "--run", str(run_id), "-o", str(out)])
    assert result.exit_code == 0, result.output
    text = " ".join(pdf_text(out.read_bytes(), tmp_path).split())
    assert "not recorded (the run predates lists of ids)" in text
