"""Browser fixtures: `pacsdesk serve` as users run it, Debian's Chromium, and an Orthanc to verify.

The served app runs on SQLite in a fresh instance folder (PostgreSQL is covered by the
integration suites; the browser journeys prove the product as one hospital installs it).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Page,
    StorageState,
    ViewportSize,
    expect,
    sync_playwright,
)

from tests.e2e.pages import (
    ADMIN_PASSWORD,
    ARTIFACTS,
    AXE_JS,
    OVERDUE,
    PASSWORD,
    PEOPLE,
    TIMEZONE,
    log_in,
    screenshot,
)
from tests.helpers import free_port, require, require_binary

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
ORTHANC = "/usr/sbin/Orthanc"
DESKTOP: ViewportSize = {"width": 1280, "height": 900}
# Generous waits for a busy 2-core machine; a passing run never waits them out.
ACTION_TIMEOUT_MS = 30_000
expect.set_options(timeout=15_000)


def require_e2e(condition: bool, reason: str) -> None:
    """Skip a browser test locally when ``condition`` is false; fail when PACSDESK_REQUIRE_E2E=1."""
    require(condition, reason, "PACSDESK_REQUIRE_E2E")


def port_open(port: int) -> bool:
    """Whether something accepts TCP connections on loopback ``port``."""
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_for(check: Callable[[], bool], what: str, timeout: float, interval: float = 0.2) -> None:
    """Poll ``check`` until it is true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() >= deadline:
            raise AssertionError(f"waited {timeout:.0f} s for {what}")
        time.sleep(interval)


def stop_process_group(process: subprocess.Popen, grace: float = 20) -> None:
    """SIGTERM a process we started in its own session, then anything left in its group."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
            time.sleep(0.5)


# ---------------------------------------------------------------- the served app


@dataclass
class Server:
    """A running `pacsdesk serve` and what the tests need to know about it."""

    url: str
    instance: Path
    env: dict[str, str]
    log: Path
    admin_password: str
    process: subprocess.Popen | None = None


def pacsdesk_command() -> list[str]:
    """The installed `pacsdesk` console script (beside this interpreter)."""
    script = Path(sys.executable).with_name("pacsdesk")
    found = str(script) if script.exists() else shutil.which("pacsdesk")
    require_e2e(found is not None, "the pacsdesk console script is not installed")
    assert found
    return [found]


def run_cli(env: dict[str, str], *args: str, stdin: str | None = None, status: int = 0) -> str:
    """Run a `pacsdesk` command and return its output; fail with that output unless it exits ``status``."""
    done = subprocess.run([*pacsdesk_command(), *args], env=env, input=stdin, text=True,
                          capture_output=True, timeout=180, cwd=env["PACSDESK_INSTANCE_PATH"],
                          check=False)
    if done.returncode != status:
        raise AssertionError(f"pacsdesk {' '.join(args)} exited {done.returncode}, not {status}:\n"
                             f"{done.stdout}\n{done.stderr}")
    return done.stdout


def server_env(instance: Path, **settings: str) -> dict[str, str]:
    """The served app's environment: none of the caller's PACSDESK_* settings, only ours."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PACSDESK_")}
    env.update({
        "PACSDESK_INSTANCE_PATH": str(instance),
        "PACSDESK_DATABASE_URL": f"sqlite:///{instance / 'pacsdesk.db'}",
        "PACSDESK_TIMEZONE": TIMEZONE,
        "PACSDESK_ORGANIZATION": "Riverside General Hospital",
        # The journeys sign in with passwords; multi-factor login has its own tests in tests/core.
        "PACSDESK_MFA_REQUIRED_ROLES": "none",
        "PYTHONUNBUFFERED": "1",
    })
    env.update(settings)
    return env


def run_in_app(env: dict[str, str], body: str) -> str:
    """Run Python ``body`` inside the served instance's app context; return what it printed."""
    script = ("from app import create_app\nfrom core import audit_sink\nfrom core.extensions import db\n"
              "app = create_app()\n"
              "audit_sink.register_actions(app, {'test.fixture': 'Data written by a test fixture'})\n"
              "with app.app_context():\n" + textwrap.indent(body, "    "))
    done = subprocess.run([sys.executable, "-c", script], env=env, text=True, capture_output=True,
                          timeout=120, cwd=env["PACSDESK_INSTANCE_PATH"], check=False)
    if done.returncode != 0:
        raise AssertionError(f"seeding the instance failed:\n{done.stderr}")
    return done.stdout


def make_training_overdue(env: dict[str, str], usernames: list[str], days: int) -> None:
    """Seed people who joined long ago: their assigned courses fell due ``days`` days back."""
    run_in_app(env, (
        "from datetime import timedelta\n"
        "from sqlalchemy import select, update\n"
        "from audit.training.services import local_today\n"
        "from audit.training.models import TrainingAssignment\n"
        "from core.auth.models import User\n"
        f"ids = select(User.id).where(User.username.in_({usernames!r}))\n"
        "db.session.execute(update(TrainingAssignment).where(TrainingAssignment.user_id.in_(ids))\n"
        f"                   .values(due_on=local_today() - timedelta(days={days})))\n"
        "from audit import record\n"
        f"record('test.fixture', object_type='training_assignment', details={{'overdue_days': {days}}})\n"
        "db.session.commit()\n"
    ))


def seed_ticket(env: dict[str, str], username: str, title: str, description: str,
                category: str = "priors_missing", reply: str = "") -> str:
    """File a ticket as ``username`` (and add its ``reply``) straight in the database; return its number."""
    out = run_in_app(env, (
        "from sqlalchemy import select\n"
        "from core.auth.models import User\n"
        "from helpdesk.models import Category\n"
        "from helpdesk.services import NewTicket, add_reply, create_ticket\n"
        f"user = db.session.scalars(select(User).where(User.username == {username!r})).one()\n"
        f"category = db.session.scalars(select(Category).where(Category.code == {category!r})).one()\n"
        f"ticket = create_ticket(NewTicket(title={title!r}, description={description!r},\n"
        "                                  category_id=category.id, impact='one', urgency='hours'), user)\n"
        f"if {reply!r}:\n"
        f"    add_reply(ticket, user, {reply!r})\n"
        "db.session.commit()\n"
        "print(ticket.number)\n"
    ))
    number = re.search(r"PD-\d+", out)
    assert number, f"seeding a ticket printed no ticket number:\n{out}"
    return number.group(0)


def seed_dicom_node(env: dict[str, str], tag: str, name: str, port: int, ae_title: str) -> None:
    """Add a PACS archive node on loopback ``port`` straight in the database."""
    run_in_app(env, (
        "from inventory.asset_rules import AssetData\n"
        "from inventory.services import create_asset\n"
        f"create_asset(AssetData(asset_tag={tag!r}, name={name!r}, kind='dicom_node',\n"
        "                        location='Data centre, rack C2', hostname='127.0.0.1',\n"
        f"                        ae_title={ae_title!r}, port={port}, dicom_type='pacs_archive',\n"
        "                        dicom_role='scp'), user=None)\n"
        "db.session.commit()\n"
    ))


def unique_suffix() -> str:
    """Six hex digits that make a seeded tag or username this test's own."""
    return uuid.uuid4().hex[:6].upper()


def install_instance(instance: Path, *, first_login_done: bool = True, log_name: str = "server-main.log",
                     **settings: str) -> Server:
    """Run `pacsdesk setup` on a fresh instance, as an installer does, and create the journeys' people.

    Setup prints a password the administrator must change at the first login; with
    ``first_login_done`` the administrator has already chosen their own (``ADMIN_PASSWORD``).
    """
    instance.mkdir(parents=True, exist_ok=True)
    env = server_env(instance, **settings)
    out = run_cli(env, "setup")
    match = re.search(r"password:\s*(\S+)", out)
    assert match, f"setup printed no administrator password:\n{out}"
    admin_password = match.group(1)
    if first_login_done:
        run_cli(env, "users", "set-password", "admin", "--password-stdin", stdin=ADMIN_PASSWORD + "\n")
        admin_password = ADMIN_PASSWORD
    server = Server(url="", instance=instance, env=env, log=ARTIFACTS / log_name,
                    admin_password=admin_password)
    for username, role, full_name, department in PEOPLE:
        run_cli(env, "users", "create", username, "--role", role, "--full-name", full_name,
                "--department", department, "--email", f"{username}@hospital.example",
                "--password-stdin", stdin=PASSWORD + "\n")
    return server


@contextmanager
def serving(server: Server, *extra: str) -> Iterator[Server]:
    """Run `pacsdesk serve` for ``server`` on a free port until the block ends."""
    port = free_port()
    server.url = f"http://127.0.0.1:{port}"
    server.log.parent.mkdir(parents=True, exist_ok=True)
    with server.log.open("w") as log:
        server.process = subprocess.Popen(
            [*pacsdesk_command(), "serve", "--host", "127.0.0.1", "--port", str(port),
             "--workers", "1", *extra],
            env=server.env, cwd=server.instance, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for(lambda: _healthy(server), f"{server.url}/healthz (log: {server.log})", timeout=60)
        yield server
    finally:
        stop_process_group(server.process)


def _healthy(server: Server) -> bool:
    """Whether /healthz answers ok; fail at once if the server died."""
    assert server.process is not None
    if server.process.poll() is not None:
        raise AssertionError(f"pacsdesk serve exited with {server.process.returncode}:\n"
                             f"{server.log.read_text()[-3000:]}")
    try:
        with urllib.request.urlopen(f"{server.url}/healthz", timeout=2) as response:  # noqa: S310
            return json.load(response).get("status") == "ok"
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


@pytest.fixture(scope="package", autouse=True)
def _fresh_artifacts() -> None:
    """Start each run with an empty artifacts folder, so every picture is from this run."""
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)


@pytest.fixture(scope="package")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The app served by gunicorn with its scheduler sweeping DICOM nodes every 10 seconds."""
    installed = install_instance(
        tmp_path_factory.mktemp("e2e") / "instance",
        PACSDESK_VERIFY_INTERVAL="10",
        PACSDESK_VERIFY_TIMEOUT="2",
        PACSDESK_DOWN_AFTER_FAILURES="1",
    )
    make_training_overdue(installed.env, OVERDUE, days=21)
    with serving(installed) as running:
        yield running


@pytest.fixture
def idle_server(server: Server) -> Iterator[Server]:
    """A second server on the same instance that logs users off after one idle minute."""
    replica = replace(server, url="", process=None, log=ARTIFACTS / "server-idle.log",
                      env={**server.env, "PACSDESK_SESSION_IDLE_MINUTES": "1"})
    with serving(replica, "--no-worker") as running:
        yield running


# ---------------------------------------------------------------- the browser


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless, driven by Playwright (never a downloaded browser)."""
    require_e2e(Path(CHROMIUM).exists(), f"{CHROMIUM} is not installed")
    require_binary("chromium")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                              args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@dataclass
class OpenPages:
    """Pages a test opened, with the browser errors each one saw."""

    browser: Browser
    contexts: list[BrowserContext] = field(default_factory=list)
    errors: dict[int, list[str]] = field(default_factory=dict)

    def open(self, base_url: str, width: int = DESKTOP["width"], height: int = DESKTOP["height"],
             bypass_csp: bool = False, storage_state: StorageState | None = None) -> Page:
        """A page in a fresh browser profile (or ``storage_state``'s cookies), ``width`` x ``height``."""
        context = self.browser.new_context(base_url=base_url, bypass_csp=bypass_csp,
                                           viewport={"width": width, "height": height},
                                           timezone_id=TIMEZONE, accept_downloads=True,
                                           storage_state=storage_state)
        context.set_default_timeout(ACTION_TIMEOUT_MS)
        self.contexts.append(context)
        page = context.new_page()
        seen = self.errors.setdefault(id(page), [])
        page.on("pageerror", lambda exc: seen.append(f"script error: {exc}"))
        page.on("console", lambda msg: seen.append(f"console: {msg.text}")
                if msg.type == "error" and "Content Security Policy" in msg.text else None)
        return page

    def all_errors(self) -> list[str]:
        """Script errors and CSP refusals seen on every page."""
        return [error for errors in self.errors.values() for error in errors]


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Keep each phase's report on the test item so fixtures know whether the test failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def pages(browser: Browser, request: pytest.FixtureRequest) -> Iterator[OpenPages]:
    """Open pages with ``pages.open(server.url)``; on failure each open page is photographed."""
    opened = OpenPages(browser)
    yield opened
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        for n, context in enumerate(opened.contexts):
            for m, page in enumerate(context.pages):
                with suppress(Exception):
                    screenshot(page, f"FAILED-{request.node.name}-{n}-{m}")
    for context in opened.contexts:
        context.close()


def _still_signed_in(browser: Browser, server: Server, state: StorageState) -> StorageState | None:
    """The refreshed cookies of ``state`` if its session still opens the home page, else None."""
    context = browser.new_context(base_url=server.url, storage_state=state)
    try:
        response = context.request.get("/", max_redirects=0)
        return context.storage_state() if response.status == 200 else None
    finally:
        context.close()


@pytest.fixture(scope="package")
def signed_in(browser: Browser, server: Server) -> Callable[[str], StorageState]:
    """``signed_in(username)``: cookies of a live session of that user.

    Logging in is rate limited, so a session is reused while it lasts; a test that logged the
    user out (which ends all their sessions) or left it idle costs the next caller a new login.
    """
    states: dict[str, StorageState] = {}

    def state(username: str) -> StorageState:
        alive = _still_signed_in(browser, server, states[username]) if username in states else None
        if alive is None:
            context = browser.new_context(base_url=server.url, viewport=DESKTOP)
            log_in(context.new_page(), username)
            alive = context.storage_state()
            context.close()
        states[username] = alive
        return alive

    return state


@pytest.fixture(scope="package")
def axe_script() -> Path:
    """axe-core's browser bundle from the npm package (`npm ci` at the top of the project)."""
    require_e2e(AXE_JS.exists(), "axe-core is not installed: run `npm ci`")
    return AXE_JS


# ---------------------------------------------------------------- a DICOM peer


@dataclass
class Orthanc:
    """An Orthanc DICOM server on loopback that the test can stop and start again."""

    config: Path
    log: Path
    aet: str
    port: int
    process: subprocess.Popen | None = None

    def start(self) -> None:
        """Start Orthanc and wait until it accepts DICOM connections."""
        with self.log.open("a") as log:
            self.process = subprocess.Popen([ORTHANC, str(self.config)], stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(self._listening, f"Orthanc on port {self.port} (log: {self.log})", timeout=30)

    def stop(self) -> None:
        """Stop Orthanc and wait until its port is closed."""
        if self.process is not None:
            stop_process_group(self.process)
            self.process = None
        wait_for(lambda: not port_open(self.port), f"Orthanc to close port {self.port}", timeout=15)

    def _listening(self) -> bool:
        """Whether the DICOM port accepts connections; fail at once if Orthanc died."""
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"Orthanc exited with {self.process.returncode}:\n"
                                 f"{self.log.read_text()[-3000:]}")
        return port_open(self.port)


@pytest.fixture
def orthanc(tmp_path: Path) -> Iterator[Orthanc]:
    """A running Orthanc that checks the called AE title, with its own storage."""
    require_e2e(Path(ORTHANC).exists(), f"{ORTHANC} is not installed")
    peer = Orthanc(config=tmp_path / "orthanc.json", log=ARTIFACTS / "orthanc.log",
                   aet="RADPACS", port=free_port())
    peer.config.write_text(json.dumps({
        "Name": "E2E Orthanc",
        "DicomAet": peer.aet,
        "DicomPort": peer.port,
        "DicomCheckCalledAet": True,
        "DicomServerEnabled": True,
        "HttpServerEnabled": False,
        "HttpPort": free_port(),
        "RemoteAccessAllowed": False,
        "StorageDirectory": str(tmp_path / "orthanc-storage"),
        "IndexDirectory": str(tmp_path / "orthanc-index"),
        "Plugins": [],
    }))
    peer.start()
    yield peer
    peer.stop()


@pytest.fixture
def requester_ticket(server: Server) -> str:
    """A ticket that dr.okafor filed, with her reply on it: its number."""
    return seed_ticket(server.env, "dr.okafor", "CT chest priors do not load in reading room 2",
                       "Comparison studies from last year do not load in the viewer.",
                       reply="Still failing after restarting the viewer.")


@pytest.fixture
def checked_node(server: Server) -> str:
    """A DICOM node the CLI checked once and found down (nothing listens on its port): its tag."""
    tag = f"PACS-TEST-{unique_suffix()}"
    seed_dicom_node(server.env, tag, "Test archive", free_port(), "TESTPACS")
    run_cli(server.env, "inventory", "verify", "--asset", tag, status=1)
    return tag


# ---------------------------------------------------------------- the order of the tests


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Keep the browser tests together, in the order given, so the served app starts once.

    No browser test needs another to run first; random ordering (pytest-randomly) shuffles
    them among themselves and this only moves them next to the first of them.
    """
    here = Path(__file__).parent
    first = next((n for n, item in enumerate(items) if item.path.parent == here), None)
    if first is None:
        return
    browser_tests = [item for item in items if item.path.parent == here]
    others = [item for item in items if item.path.parent != here]
    items[:] = others[:first] + browser_tests + others[first:]
