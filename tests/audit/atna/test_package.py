"""audit.atna's receiving and parsing layer stays pure: no web framework, no database, nothing of the app."""

from __future__ import annotations

import ast
from pathlib import Path

import audit.atna

# The receiving and parsing layer; storage, search, pages and reports build on it and may use the app.
PURE = ("collect", "connections", "errors", "handover", "listen", "message", "parse", "query", "receiver",
        "syslog")
FORBIDDEN = ("flask", "flask_sqlalchemy", "sqlalchemy", "psycopg", "core", "helpdesk", "inventory")


def imported_modules(path: Path) -> set[str]:
    """Top-level names of every module a source file imports."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_no_module_of_the_package_imports_the_app_or_a_database():
    sources = [Path(audit.atna.__file__).parent / f"{name}.py" for name in PURE]
    assert all(path.exists() for path in sources)
    for path in sources:
        for name in imported_modules(path):
            assert name.split(".")[0] not in FORBIDDEN, f"{path.name} imports {name}"
            assert not name.startswith("audit.") or name.startswith("audit.atna."), f"{path.name}: {name}"
