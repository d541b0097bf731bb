"""A real Orthanc for the study tests, and generated studies to fill it with over C-STORE."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    CTImageStorage,
    DigitalMammographyXRayImageStorageForPresentation,
    MRImageStorage,
    SecondaryCaptureImageStorage,
)

from inventory.studies.dimse import Archive
from inventory.studies.orthanc import OrthancClient
from inventory.studies.records import put
from tests.helpers import free_port, require_binary

ORTHANC_AET = "ORTHANC_TEST"
CALLING_AET = "PACSDESK"
USER = "pacsdesk"
PASSWORD = "orthanc-test-password"
SOP_CLASSES = {"CT": CTImageStorage, "MR": MRImageStorage,
               "MG": DigitalMammographyXRayImageStorageForPresentation}


def orthanc_binary() -> str:
    """Orthanc's path: Debian installs it in /usr/sbin, which is not on every user's PATH."""
    debian = Path("/usr/sbin/Orthanc")
    if not shutil.which("Orthanc") and debian.exists():
        return str(debian)
    return require_binary("Orthanc")


def _listening(port: int) -> bool:
    """Whether something accepts TCP connections on loopback ``port``."""
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class OrthancServer:
    """An Orthanc started from a generated configuration in its own folder, on free loopback ports."""

    folder: Path
    limit: int = 5
    instance_limit: int = 5
    lua: str | None = None
    port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    def start(self) -> OrthancServer:
        """Write the configuration, start Orthanc and wait for both its DICOM and HTTP ports."""
        config = {
            "Name": "PACS Desk study tests", "DicomAet": ORTHANC_AET, "DicomPort": self.port,
            "DicomCheckCalledAet": True, "DicomAlwaysAllowEcho": True, "DicomAlwaysAllowFind": True,
            "DicomAlwaysAllowStore": True, "LimitFindResults": self.limit,
            "LimitFindInstances": self.instance_limit, "HttpPort": self.http_port,
            "RemoteAccessAllowed": False, "AuthenticationEnabled": True,
            "RegisteredUsers": {USER: PASSWORD}, "StorageDirectory": str(self.folder / "storage"),
            "IndexDirectory": str(self.folder / "index"), "Plugins": [], "SaveJobs": False,
        }
        if self.lua is not None:
            script = self.folder / "script.lua"
            script.write_text(self.lua)
            config["LuaScripts"] = [str(script)]
        (self.folder / "orthanc.json").write_text(json.dumps(config))
        log = (self.folder / "orthanc.log").open("w")
        # DCMTK inside Orthanc waits for delayed acknowledgements (~40 ms a C-FIND) unless told not to.
        env = {**os.environ, "TCP_NODELAY": "1"}
        self.process = subprocess.Popen([orthanc_binary(), str(self.folder / "orthanc.json")],
                                        cwd=self.folder, stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        deadline = time.monotonic() + 30
        while not (_listening(self.port) and _listening(self.http_port)):
            if self.process.poll() is not None:
                pytest.fail(f"Orthanc exited with {self.process.returncode}: "
                            f"{(self.folder / 'orthanc.log').read_text()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail("Orthanc did not listen within 30 s")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        """Kill Orthanc and reap it: its data is thrown away, and a clean shutdown takes ~3 s."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.kill()
        self.process.wait(timeout=10)

    def pause(self) -> None:
        """Freeze Orthanc (SIGSTOP): its sockets stay open but nothing answers."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused Orthanc run again (SIGCONT)."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)

    def archive(self, timeout: float = 5.0, limit: int | None = None) -> Archive:
        """The archive as PACS Desk calls it, with Orthanc's result limit known (or ``limit``)."""
        return Archive("127.0.0.1", self.port, ORTHANC_AET, CALLING_AET, timeout,
                       find_limit=self.limit if limit is None else limit)

    def client(self, password: str = PASSWORD, timeout: float = 5.0) -> OrthancClient:
        """A REST client for this Orthanc."""
        return OrthancClient(f"http://127.0.0.1:{self.http_port}", USER, password, timeout)

    def store(self, datasets: Iterable[Dataset]) -> None:
        """C-STORE ``datasets`` over one association; fail the test on any non-success status."""
        ae = AE(ae_title=CALLING_AET)
        for sop_class in (*SOP_CLASSES.values(), SecondaryCaptureImageStorage):
            ae.add_requested_context(sop_class, ExplicitVRLittleEndian)
        assoc = ae.associate("127.0.0.1", self.port, ae_title=ORTHANC_AET)
        assert assoc.is_established, "Orthanc refused the storing association"
        try:
            for ds in datasets:
                status = assoc.send_c_store(ds)
                assert getattr(status, "Status", None) == 0, f"C-STORE failed: {status}"
        finally:
            assoc.release()
            ae.shutdown()


@dataclass(frozen=True)
class StudySpec:
    """A study to generate: what the archive should answer about it."""

    study_uid: str
    study_date: str | None
    patient_id: str
    birth_date: str = "19700101"
    modality: str = "CT"
    study_time: str = "120000"
    accession: str = ""
    series: int = 1
    instances: int = 1

    def datasets(self) -> list[Dataset]:
        """One small image per instance, in ``series`` series."""
        out: list[Dataset] = []
        for number in range(self.series):
            series_uid = generate_uid()
            out.extend(make_image(self, series_uid, number + 1, index + 1) for index in range(self.instances))
        return out


def make_image(spec: StudySpec, series_uid: str, series_number: int, instance_number: int) -> Dataset:
    """An 8x8 8-bit image of the study ``spec`` (values set without validation: some are malformed)."""
    ds = Dataset()
    sop_class = SOP_CLASSES.get(spec.modality, SecondaryCaptureImageStorage)
    values: dict[str, object] = {
        "SOPClassUID": sop_class, "SOPInstanceUID": generate_uid(), "StudyInstanceUID": spec.study_uid,
        "SeriesInstanceUID": series_uid, "PatientID": spec.patient_id, "PatientName": "TEST^PATIENT",
        "PatientBirthDate": spec.birth_date, "PatientSex": "F", "StudyTime": spec.study_time,
        "AccessionNumber": spec.accession, "StudyDescription": "generated", "Modality": spec.modality,
        "SeriesNumber": series_number, "InstanceNumber": instance_number, "StudyID": "1",
        "Rows": 8, "Columns": 8, "BitsAllocated": 8, "BitsStored": 8, "HighBit": 7,
        "PixelRepresentation": 0, "SamplesPerPixel": 1, "PhotometricInterpretation": "MONOCHROME2",
    }
    if spec.study_date is not None:
        values["StudyDate"] = spec.study_date
    for keyword, value in values.items():
        put(ds, keyword, value)
    ds.PixelData = bytes(64)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def da(day: date) -> str:
    """A date as DICOM DA."""
    return day.strftime("%Y%m%d")
