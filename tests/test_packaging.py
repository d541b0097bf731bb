"""A built wheel installs a PACS Desk that works away from the checkout: templates, static files
and migrations travel inside it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
import textwrap
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.integration


def _run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run a command, failing the test with its output when it fails."""
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, f"{args}\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh virtualenv holding only the wheel built from this checkout (dependencies borrowed)."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_bytes((ROOT / name).read_bytes())
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", work / "dist",
         source, cwd=work)
    (wheel,) = (work / "dist").glob("pacsdesk-*.whl")
    target = work / "venv"
    venv.create(target, with_pip=False)
    # The dependencies come from the test's own environment: a plain path entry, so the checkout's
    # editable install there (a .pth hook) is not picked up.
    site = Path(sysconfig.get_paths(vars={"base": str(target), "platbase": str(target)})["purelib"])
    (site / "borrowed_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run(sys.executable, "-m", "pip", "--python", target / "bin" / "python", "install", "--no-deps",
         wheel, cwd=work)
    return target


def test_the_wheel_ships_templates_static_files_and_migrations(installed, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PACSDESK_") and k != "PYTHONPATH"}
    env.update(PACSDESK_INSTANCE_PATH=str(elsewhere / "instance"),
               PACSDESK_DATABASE_URL=f"sqlite:///{elsewhere / 'pacsdesk.db'}")

    setup = _run(installed / "bin" / "pacsdesk", "setup", cwd=elsewhere, env=env)
    assert re.search(r"username: admin\s+password: \S{16,}", setup.stdout), setup.stdout

    probe = textwrap.dedent("""
        import app
        from app import create_app
        client = create_app().test_client()
        login = client.get("/login")
        css = client.get("/static/css/pacsdesk.css")
        print(app.__file__)
        print(login.status_code, b"<form" in login.data)
        print(css.status_code, len(css.data) > 0)
    """)
    out = _run(installed / "bin" / "python", "-c", probe, cwd=elsewhere, env=env).stdout.splitlines()
    assert Path(out[0]).is_relative_to(installed), "the app must come from the wheel, not the checkout"
    assert out[1:] == ["200 True", "200 True"]
