"""C-ECHO against the DICOM servers hospitals run: dcmtk's storescp and Orthanc (Debian packages)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.extensions import db
from inventory.models import Asset
from inventory.verification.dicom import Outcome, echo
from inventory.verification.services import verify_asset
from tests.helpers import ANSWER_TIMEOUT, free_port, require_binary

pytestmark = pytest.mark.integration

TIMEOUT = ANSWER_TIMEOUT


def wait_for_port(port: int, process: subprocess.Popen, seconds: float = 30) -> None:
    """Wait until something listens on the loopback ``port`` (or the process dies)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read() if process.stdout else ""
            pytest.fail(f"server exited with {process.returncode}: {output[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"nothing listened on port {port} within {seconds} s")


def stop(process: subprocess.Popen) -> None:
    """Terminate a server process, reap it and close its output pipe."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
    if process.stdout:
        process.stdout.close()


@pytest.fixture(scope="module")
def storescp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """dcmtk's storescp answering C-ECHO as STORESCP on a free port."""
    binary = require_binary("storescp")
    tmp_path = tmp_path_factory.mktemp("storescp")
    port = free_port()
    process = subprocess.Popen([binary, "-aet", "STORESCP", "--ignore", str(port)], cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for_port(port, process)
    yield port
    stop(process)


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """Orthanc with its own storage, checking the called AE title, on free ports."""
    # Debian installs Orthanc in /usr/sbin, which is not on every user's PATH.
    debian = Path("/usr/sbin/Orthanc")
    binary = str(debian) if not shutil.which("Orthanc") and debian.exists() \
        else require_binary("Orthanc")
    tmp_path = tmp_path_factory.mktemp("orthanc")
    port, http_port = free_port(), free_port()
    config = {
        "Name": "PACS Desk test archive", "DicomAet": "ORTHANC_TEST", "DicomPort": port,
        "DicomCheckCalledAet": True, "DicomAlwaysAllowEcho": True, "HttpPort": http_port,
        "RemoteAccessAllowed": False, "AuthenticationEnabled": True,
        "StorageDirectory": str(tmp_path / "storage"), "IndexDirectory": str(tmp_path / "index"),
        "Plugins": [],
    }
    (tmp_path / "orthanc.json").write_text(json.dumps(config))
    process = subprocess.Popen([binary, str(tmp_path / "orthanc.json")], cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for_port(port, process)
    yield port
    stop(process)


def test_storescp_answers_c_echo(storescp):
    result = echo("127.0.0.1", storescp, "STORESCP", "PACSDESK", TIMEOUT)
    assert result.outcome is Outcome.OK, result


def test_storescp_does_not_check_the_called_ae_title(storescp):
    assert echo("127.0.0.1", storescp, "ANYTHING", "PACSDESK", TIMEOUT).outcome is Outcome.OK


def test_orthanc_answers_c_echo_with_its_ae_title(orthanc):
    result = echo("127.0.0.1", orthanc, "ORTHANC_TEST", "PACSDESK", TIMEOUT)
    assert result.outcome is Outcome.OK, result


def test_orthanc_rejects_a_wrong_called_ae_title(orthanc):
    result = echo("127.0.0.1", orthanc, "NOT_ORTHANC", "PACSDESK", TIMEOUT)
    assert result.outcome is Outcome.REJECTED, result
    assert (result.result, result.source, result.reason) == (1, 1, 7)
    assert "called AE title not recognised" in result.detail


def test_orthanc_node_verified_through_the_app_is_up(app, orthanc, make_node):
    asset_id = make_node("PACS-01", orthanc, ae_title="ORTHANC_TEST", dicom_type="pacs_archive")
    with app.app_context():
        check = verify_asset(db.session.get(Asset, asset_id), "manual")
        db.session.commit()
        assert check.outcome == "ok", check.detail
