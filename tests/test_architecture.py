"""The house rules that hold by construction: dependencies point one way, wiring is explicit."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

from flask import Flask

from core.extensions import db

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "audit", "helpdesk", "inventory")
# Who may import whom: inventory -> helpdesk -> audit -> core.
ALLOWED = {
    "core": set(),
    "audit": {"core"},
    "helpdesk": {"audit", "core"},
    "inventory": {"helpdesk", "audit", "core"},
}


def _imports(path: Path) -> set[str]:
    """The top-level names a module imports, at any depth (functions included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def import_edges() -> set[tuple[str, str, str]]:
    """(package, imported package, file) for every import between the project's packages."""
    edges = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for name in _imports(path) & set(PACKAGES):
                if name != package:
                    edges.add((package, name, str(path.relative_to(ROOT))))
    return edges


def test_imports_between_packages_point_one_way():
    back_edges = sorted(f"{file}: {src} imports {dst}" for src, dst, file in import_edges()
                        if dst not in ALLOWED[src])
    assert back_edges == []


def test_the_import_check_sees_a_new_back_edge(tmp_path, monkeypatch):
    fake = tmp_path / "helpdesk"
    fake.mkdir()
    (fake / "sneaky.py").write_text("def f():\n    from inventory.models import Asset\n    return Asset\n")
    for package in PACKAGES:
        if package != "helpdesk":
            (tmp_path / package).mkdir()
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert ("helpdesk", "inventory", "helpdesk/sneaky.py") in import_edges()


def _package_of(cls: type) -> str:
    """The project package a class is defined in."""
    return cls.__module__.split(".")[0]


def test_model_relationships_point_the_same_way(app: Flask):
    wrong = []
    for mapper in db.Model.registry.mappers:
        source = _package_of(mapper.class_)
        for rel in mapper.relationships:
            target = _package_of(rel.mapper.class_)
            if target != source and target not in ALLOWED.get(source, set()):
                wrong.append(f"{mapper.class_.__name__}.{rel.key} -> {rel.mapper.class_.__name__}")
    assert wrong == []


def test_domain_packages_do_not_name_each_others_endpoints():
    """The help desk reaches inventory pages only through the asset lookup, never by endpoint name."""
    named = []
    for path in (ROOT / "helpdesk").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and node.value.startswith("inventory."):
                named.append(f"{path.relative_to(ROOT)}: {node.value}")
    assert named == []


SNAPSHOT = """
import json, random, sys, importlib, pkgutil
order = sys.argv[1]
names = []
if order != "none":
    for package in ("core", "audit", "helpdesk", "inventory"):
        module = importlib.import_module(package)
        names.append(package)
        names += [m.name for m in pkgutil.walk_packages(module.__path__, package + ".")]
    random.Random(int(order)).shuffle(names)
    for name in names:
        importlib.import_module(name)
        importlib.import_module(name)
from app import create_app
def snapshot(app):
    from audit.reports.registry import report_kinds
    from audit.retention.registry import record_classes
    from core import audit_sink
    from core.navigation import _navigation
    from core.reference_data import _loaders
    from core.jobs.registry import job_kinds
    with app.app_context():
        nav = _navigation(app)
        return {"actions": sorted(audit_sink.actions(app)), "jobs": sorted(job_kinds(app)),
                "classes": sorted(record_classes(app)), "kinds": [k.key for k in report_kinds()],
                "nav": [i.endpoint for i in nav.items], "panels": [p.template for p in nav.panels],
                "banners": len(nav.banner_sources), "reference": [n for n, _ in _loaders(app)],
                "blueprints": sorted(app.blueprints), "commands": sorted(app.cli.commands)}
config = {"SQLALCHEMY_DATABASE_URI": "sqlite://", "SECRET_KEY": "x", "PACSDESK_INSTANCE_PATH": sys.argv[2]}
first, second = snapshot(create_app(config)), snapshot(create_app(config))
assert first == second, "a second app registered something different"
print(json.dumps(first, sort_keys=True))
"""


def _registrations(order: str, instance: Path) -> dict:
    """What a fresh app registers after importing every module in a shuffled order (or none)."""
    out = subprocess.run([sys.executable, "-c", SNAPSHOT, order, str(instance)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120, check=True).stdout
    return json.loads(out)


def test_importing_modules_registers_nothing_and_every_app_gets_the_same_wiring(tmp_path):
    plain = _registrations("none", tmp_path)
    assert "ticket.create" in plain["actions"] and "inventory.sweep" in plain["jobs"]
    assert {"closed_tickets", "audit_events", "verification_results"} <= set(plain["classes"])
    for seed in ("1", "2"):
        assert _registrations(seed, tmp_path) == plain


def test_create_app_runs_each_package_init_app_in_order():
    source = (ROOT / "app.py").read_text()
    calls = [line.strip() for line in source.splitlines() if line.strip().endswith(".init_app(app)")]
    assert calls == ["core.init_app(app)", "audit.init_app(app)", "helpdesk.init_app(app)",
                     "inventory.init_app(app)"]


def test_record_classes_are_described_once_except_the_two_logs(app: Flask):
    from audit.retention.described import Described
    from audit.retention.registry import record_classes

    with app.app_context():
        classes = record_classes()
        hand_written = {key for key, rc in classes.items()
                        if not isinstance(getattr(rc.candidates, "__self__", None), Described)}
    # The audit chain loses only a prefix; the PACS access log drops month partitions.
    assert hand_written == {"audit_events", "atna_messages"}
    assert {"closed_tickets", "verification_results", "report_files", "training_records"} <= set(classes)
